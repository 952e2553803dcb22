"""Real browser tests: Debian's chromium driven by selenium (``make browser-tools`` installs
``chromium`` and ``chromium-driver``; without them every test here is skipped, saying so).

* formgrader (nbgrader's own grading UI, in a Jupyter server) on the course ``grade`` wrote:
  one hand score and one comment given there reach ``export``'s total;
* the grade-by-question page: three answers scored, the page reloaded, the scores are there and
  in the export;
* a feedback page renders and shows nothing of the hidden tests;
* JupyterLab on the student release: "Run All Cells" in the smoke profile stops at the first
  stub's ``NotImplementedError``; with the answers filled in every cell runs and the plots
  render.

Screenshots are kept in ``build/test-artifacts/browser/`` (``$FEATURELAB_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from autograder import course, export, gradebook, questions, students
from autograder.results import Record
from autograder.template import _hidden_lines
from tests.data import handgrading
from tests.data.toy import TOY_COURSE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = (
    Path(
        os.environ.get("FEATURELAB_TEST_ARTIFACTS") or course.REPO_ROOT / "build" / "test-artifacts"
    )
    / "browser"
)
QUESTION = handgrading.QUESTION
CHEAP = "tp6_resnet18_features"  # one photo through ResNet-18: the cheapest TP to run


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not found: install Debian's chromium and chromium-driver "
            "(`make browser-tools`, as root)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return handgrading.graded_class(tmp_path_factory)


def _by():
    from selenium.webdriver.common.by import By

    return By


def wait_for(condition, timeout: float = 60, what: str = "the page"):
    """Poll ``condition()`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except Exception:  # noqa: BLE001 - a stale element while the page changes: retry
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.3)


def click(driver, element, what: str) -> None:
    """Click ``element`` as a user would: scrolled to the middle of the window first.

    formgrader's page still moves while MathJax and the notebook's images render, so a
    click can land on whatever slid under the pointer; it is retried until it reaches
    the element itself (``wait_for`` treats the interception as "not yet").
    """

    def clicked():
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()
        return True

    wait_for(clicked, timeout=30, what=f"a click to reach {what}")


def screenshot(driver, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def jupyter(app: str, root: Path, work: Path, extra_env: dict | None = None):
    """``jupyter <app>`` (``server`` or ``lab``) in ``root``, no token, isolated config,
    kernelspec of this interpreter; yields its base URL, stops its whole process group."""
    port = _free_port()
    env = course.base_env(work / "jupyter", extra=extra_env)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend draws the plots
    command = [
        str(Path(sys.executable).parent / "jupyter"),
        app,
        "--allow-root",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        f"--ServerApp.root_dir={root}",
    ]
    log_path = work / f"jupyter-{app}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready():
            if process.poll() is not None:
                pytest.fail(f"jupyter {app} exited:\n{log_path.read_text()[-3000:]}")
            with urllib.request.urlopen(f"{base}/api", timeout=3) as response:
                return response.status == 200

        wait_for(ready, 120, f"jupyter {app}")
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def _records(out) -> dict[str, Record]:
    data = json.loads((gradebook.course_dir(out) / gradebook.RECORDS_FILE).read_text())
    return {r["student"]: Record.from_dict(r) for r in data}


def _grades_csv(path) -> dict[str, dict]:
    with open(path, newline="") as stream:
        return {row["student"]: row for row in csv.DictReader(stream)}


def _gradebook(out):
    from nbgrader.api import Gradebook

    return Gradebook(gradebook.db_url(gradebook.course_dir(out)), course_id=gradebook.COURSE_ID)


def _hand_grade(out, student: str):
    with _gradebook(out) as gb:
        grade = gb.find_grade(QUESTION, "toy", "toy", student)
        comment = gb.find_comment(QUESTION, "toy", "toy", student)
        return grade.manual_score, comment.manual_comment


# ----------------------------------------------------------------------------- formgrader


def test_formgrader_hand_score_and_comment_reach_the_export(browser, graded, tmp_path):
    by = _by()
    from selenium.webdriver.common.keys import Keys

    root = handgrading.copy_class(graded, tmp_path / "class")
    out = root / "out"
    student, comment_text = "anna7", "Right: the norm carries the contrast, not the class."
    with jupyter("server", gradebook.course_dir(out), tmp_path) as base:
        browser.get(f"{base}/formgrader/gradebook/toy/toy")  # the assignment's submissions
        link = wait_for(
            lambda: next(
                a
                for a in browser.find_elements(by.CSS_SELECTOR, "a.name-shown")
                if a.get_attribute("textContent") == student
            ),
            what=f"{student}'s submission in formgrader's list",
        )
        browser.get(link.get_attribute("href"))
        wait_for(
            lambda: browser.execute_script(
                "return window.formgrader && formgrader.grades && formgrader.grades.loaded"
                " && formgrader.comments.loaded"
            ),
            what="formgrader's grades and comments",
        )
        score = browser.find_element(by.ID, QUESTION)  # formgrader saves on "change"
        click(browser, score, "the score box")
        score.send_keys("1", Keys.TAB)
        comment = browser.find_element(by.ID, f"{QUESTION}-comment")
        click(browser, comment, "the comment box")
        comment.send_keys(comment_text, Keys.TAB)
        wait_for(lambda: _hand_grade(out, student) == (1.0, comment_text), what="the save")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", score)
        screenshot(browser, "formgrader-hand-graded")
    before = _records(out)[student]
    _, written = export.export(out)
    row = _grades_csv(written["grades"])[student]
    assert float(row["score"]) == before.score + 1.0  # automatic points + the hand-given one
    assert (row["hand_score"], row["complete"], row[QUESTION]) == ("1", "yes", "1")
    page = (written["feedback"] / student / "toy.html").read_text()
    assert comment_text in page


# ----------------------------------------------------------------------------- question page


@pytest.fixture
def question_server(graded, tmp_path):
    root = handgrading.copy_class(graded, tmp_path / "class")
    server = questions.make_server(root / "out", port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.out = root / "out"
    yield server
    server.shutdown()
    server.server_close()


def test_question_page_scores_survive_a_reload_and_reach_the_export(browser, question_server):
    by = _by()
    out = question_server.out
    url = f"http://127.0.0.1:{question_server.server_address[1]}/q/toy/{QUESTION}"
    browser.get(url)
    rubric = browser.find_element(by.CSS_SELECTOR, "[data-part=rubric]")
    assert rubric.is_displayed() and "Rubric (1 point)" in rubric.text
    assert browser.find_element(by.CSS_SELECTOR, "[data-part=model]").is_displayed()
    body = browser.find_element(by.TAG_NAME, "body").text
    assert not any(student in body for student in handgrading.ANSWERS)  # anonymised
    sections = browser.find_elements(by.CSS_SELECTOR, "section.answer")
    assert len(sections) == len(handgrading.ANSWERS)
    given = {}
    with _gradebook(out) as gb:
        for section in sections:
            field = section.find_element(by.CSS_SELECTOR, "input.score")
            owner = gb.find_grade_by_id(field.get_attribute("name")[len("score-") :]).student.id
            if handgrading.ANSWERS[owner] is not None and len(given) < 3:
                given[section.get_attribute("id")] = (owner, [1, 0.5, 0.25][len(given)])
    assert len(given) == 3
    for section_id, (_owner, value) in given.items():
        section = browser.find_element(by.ID, section_id)
        section.find_element(by.CSS_SELECTOR, "input.score").send_keys(str(value))
        section.find_element(by.TAG_NAME, "textarea").send_keys(f"worth {value}")
    screenshot(browser, "question-page-filled")
    click(browser, browser.find_element(by.ID, "save-all"), "the save-all button")
    wait_for(lambda: browser.find_element(by.ID, "saved"), what="the saved notice")
    browser.refresh()
    for section_id, (_owner, value) in given.items():
        section = browser.find_element(by.ID, section_id)
        assert (
            float(section.find_element(by.CSS_SELECTOR, "input.score").get_attribute("value"))
            == value
        )
        assert (
            section.find_element(by.TAG_NAME, "textarea").get_attribute("value") == f"worth {value}"
        )
    screenshot(browser, "question-page-reloaded")
    records = _records(out)
    _, written = export.export(out)
    rows = _grades_csv(written["grades"])
    for owner, value in given.values():
        assert float(rows[owner]["hand_score"]) == value
        assert float(rows[owner]["score"]) == records[owner].score + value
        assert rows[owner]["complete"] == "yes"


# ----------------------------------------------------------------------------- feedback


def test_feedback_pages_render_without_hidden_test_text(browser, graded, tmp_path):
    by = _by()
    out = graded / "out"
    hidden = _hidden_lines(course.read_notebook(course.source_notebook(TOY_COURSE, "toy")))
    assert hidden, "the toy course has hidden tests"
    root = handgrading.copy_class(graded, tmp_path / "class")
    with _gradebook(root / "out") as gb:
        gb.find_grade(QUESTION, "toy", "toy", "carl7").manual_score = 0.5
        gb.find_comment(QUESTION, "toy", "toy", "carl7").manual_comment = "Half: why?"
        gb.db.commit()
    _, written = export.export(root / "out")
    pages = [(r, out / "feedback" / r.student / "toy.html") for r in _records(out).values()]
    pages.append((_records(root / "out")["carl7"], written["feedback"] / "carl7" / "toy.html"))
    for record, page in pages:
        browser.get(page.as_uri())
        heading = browser.find_element(by.TAG_NAME, "h1")
        assert heading.is_displayed() and heading.text == "Feedback: toy"
        rows = browser.find_elements(by.CSS_SELECTOR, "table tr")
        assert len(rows) >= len(record.cells) + 1  # a header, then every graded cell
        text = browser.find_element(by.TAG_NAME, "body").text
        source = browser.page_source
        assert "BEGIN HIDDEN" not in source and "Traceback" not in text
        for line in hidden:
            assert line not in source, (page, line)
    assert "Half: why?" in text and "Score:" in text
    screenshot(browser, "feedback-final")


# ----------------------------------------------------------------------------- JupyterLab


def _lab_settings(folder: Path) -> Path:
    """JupyterLab user settings: every cell in the page (no windowing), no news poll."""
    settings = {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, values in settings.items():
        path = folder / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


def _run_all_in_lab(browser, base: str, name: str) -> list[str]:
    """Open ``name`` in JupyterLab, Run > Run All Cells, wait until the kernel is idle again
    with an error shown or every cell run; returns the input prompts ("[3]:", "[ ]:")."""
    by = _by()

    def idle():
        return browser.find_elements(
            by.XPATH, "//*[contains(@class,'jp-StatusBar')]//*[contains(text(),'| Idle')]"
        )

    def prompts():
        cells = browser.find_elements(by.CSS_SELECTOR, ".jp-Notebook .jp-CodeCell")
        return [c.find_element(by.CSS_SELECTOR, ".jp-InputPrompt").text for c in cells]

    browser.get(f"{base}/lab/tree/{name}?reset")
    wait_for(lambda: len(prompts()) > 5 and idle(), 180, "the notebook and its kernel")
    browser.find_element(
        by.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel') and text()='Run']"
    ).click()
    items = wait_for(lambda: browser.find_elements(by.CSS_SELECTOR, ".lm-Menu .lm-Menu-item"))
    next(i for i in items if i.get_attribute("data-command") == "runmenu:run-all").click()

    def finished():
        # Idle with no cell still marked running ("[*]:" lags behind the kernel when the
        # browser is busy), and either an error shown or every cell run.
        shown = prompts()
        settled = idle() and "[*]:" not in shown
        return settled and (errors(browser) or "[ ]:" not in shown) and shown

    def started():
        shown = prompts()
        return "[*]:" in shown or "[ ]:" not in shown or errors(browser)

    wait_for(started, 60, "Run All to start")
    return wait_for(finished, 420, "Run All Cells to finish")


def errors(browser):
    by = _by()
    return [
        e
        for e in browser.find_elements(
            by.CSS_SELECTOR,
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        )
        if "Traceback" in e.text or "Error" in e.text
    ]


@pytest.fixture
def lab_release(tmp_path):
    """A copy of the student release of the cheapest TP, for JupyterLab (never the repository's
    notebooks/: the lab saves into the files it opens)."""
    folder = tmp_path / "release"
    folder.mkdir()
    shutil.copy(course.release_notebook(course.REPO_ROOT, CHEAP), folder)
    env = {
        "FEATURELAB_PROFILE": "smoke",  # no dataset in this TP: one photo of scikit-image
        "JUPYTERLAB_SETTINGS_DIR": str(_lab_settings(tmp_path / "lab-settings")),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    return folder, env


def test_jupyterlab_release_stops_at_the_first_stub(browser, lab_release, tmp_path):
    folder, env = lab_release
    notebook = course.read_notebook(folder / f"{CHEAP}.ipynb")
    code = [c for c in notebook.cells if c.cell_type == "code"]
    first_stub = next(i for i, c in enumerate(code) if "raise NotImplementedError" in c.source)
    with jupyter("lab", folder, tmp_path, env) as base:
        prompts = _run_all_in_lab(browser, base, f"{CHEAP}.ipynb")
        shown = errors(browser)
        assert len(shown) == 1 and "NotImplementedError" in shown[0].text
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", shown[0])
        screenshot(browser, "jupyterlab-release-first-stub")
    ran = [i for i, prompt in enumerate(prompts) if prompt not in ("[ ]:", "[*]:")]
    assert ran == list(range(len(ran))), prompts  # in order, then Run All stopped
    assert ran[-1] > first_stub  # the stub is defined, then the first cell calling it raised
    assert len(ran) < len(prompts)


def test_jupyterlab_with_the_answers_runs_every_cell_and_draws(browser, lab_release, tmp_path):
    by = _by()
    folder, env = lab_release
    path = folder / f"{CHEAP}.ipynb"
    source = course.read_notebook(course.source_notebook(course.REPO_ROOT, CHEAP))
    students.write(students.solved_release(source, course.read_notebook(path)), path)
    with jupyter("lab", folder, tmp_path, env) as base:
        prompts = _run_all_in_lab(browser, base, path.name)
        assert errors(browser) == []
        assert "[ ]:" not in prompts and "[*]:" not in prompts, prompts
        images = browser.find_elements(by.CSS_SELECTOR, ".jp-RenderedImage img")
        assert images, "no plot was drawn"
        for image in images:
            assert browser.execute_script("return arguments[0].naturalWidth", image) > 0
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", images[-1])
        screenshot(browser, "jupyterlab-solved-plots")
