"""The course's public identity, set once in ``autograder/course.toml``.

Where students get the course (the public *student* repository: host, owner, name) and the
version they install (``ref``: a tag, or a commit). The source notebooks in ``solutions/``
carry placeholder tokens that :func:`substitute` replaces when the notebooks are released:

==========================  ===================================================================
``{{COURSE_COLAB_URL}}``    ``https://colab.research.google.com/github/<owner>/<name>/blob/<ref>``
                            (the "Open in Colab" badge: ``{{COURSE_COLAB_URL}}/notebooks/<id>/<id>.ipynb``)
``{{COURSE_REPO_URL}}``     ``https://<host>/<owner>/<name>``
``{{COURSE_REF}}``          ``<ref>`` (the Colab install cell:
                            ``%pip install -q "featurelab @ git+{{COURSE_REPO_URL}}@{{COURSE_REF}}"``)
==========================  ===================================================================

The repository ships a PLACEHOLDER identity (``github.com/featurelab/featurelab``, which does not
exist): ``preflight`` fails and the student edition is refused until it is changed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .course import REPO_ROOT, AutograderError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ModuleNotFoundError:  # pragma: no cover - depends on the interpreter
        tomllib = None  # type: ignore[assignment]

CONFIG_FILE = REPO_ROOT / "autograder" / "course.toml"
PLACEHOLDER_OWNER_NAME = ("featurelab", "featurelab")
PLACEHOLDER_URL = "featurelab/featurelab"  # must appear nowhere in a student edition
TOKENS = ("{{COURSE_COLAB_URL}}", "{{COURSE_REPO_URL}}", "{{COURSE_REF}}")
TOKEN_PREFIX = "{{COURSE_"
BRANCH_NAMES = ("main", "master", "HEAD", "develop", "dev", "trunk")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_COMMIT = re.compile(r"[0-9a-f]{7,40}")


@dataclass(frozen=True)
class CourseIdentity:
    host: str
    owner: str
    name: str
    ref: str
    license_holder: str = "The featurelab authors"
    config: Path | None = None  # where it was read from (messages)

    @property
    def repo_url(self) -> str:
        return f"https://{self.host}/{self.owner}/{self.name}"

    @property
    def clone_url(self) -> str:
        return f"{self.repo_url}.git"

    @property
    def pip_requirement(self) -> str:
        """``featurelab @ git+https://<host>/<owner>/<name>@<ref>``: what Colab installs."""
        return f"featurelab @ git+{self.repo_url}@{self.ref}"

    @property
    def colab_url(self) -> str:
        return f"https://colab.research.google.com/github/{self.owner}/{self.name}/blob/{self.ref}"

    def colab_notebook_url(self, assignment: str) -> str:
        return f"{self.colab_url}/notebooks/{assignment}/{assignment}.ipynb"

    @property
    def is_placeholder(self) -> bool:
        return (self.owner.lower(), self.name.lower()) == PLACEHOLDER_OWNER_NAME

    @property
    def ref_is_commit(self) -> bool:
        return bool(_COMMIT.fullmatch(self.ref))

    def substitutions(self) -> dict[str, str]:
        return {
            "{{COURSE_COLAB_URL}}": self.colab_url,
            "{{COURSE_REPO_URL}}": self.repo_url,
            "{{COURSE_REF}}": self.ref,
        }

    def substitute(self, text: str) -> str:
        """``text`` with every identity token replaced (unknown ``{{COURSE_...}}`` tokens stay)."""
        for token, value in self.substitutions().items():
            text = text.replace(token, value)
        return text

    def describe(self) -> str:
        return f"{self.repo_url} @ {self.ref}"


def config_file(course_root: Path | None = None) -> Path:
    """``<course_root>/autograder/course.toml`` when it exists, else the repository's."""
    if course_root is not None:
        candidate = Path(course_root) / "autograder" / "course.toml"
        if candidate.is_file():
            return candidate
    return CONFIG_FILE


def load(path: Path | None = None, *, course_root: Path | None = None) -> CourseIdentity:
    """Read and validate the identity (``AutograderError`` naming the file on any problem)."""
    path = Path(path) if path else config_file(course_root)
    if tomllib is None:  # pragma: no cover
        raise AutograderError("reading autograder/course.toml needs Python >= 3.11 or `tomli`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AutograderError(
            f"no course identity file {path} (see autograder/course.toml in "
            "the repository for the format)"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise AutograderError(f"{path}: not valid TOML: {error}") from None
    repo = data.get("student_repository")
    if not isinstance(repo, dict):
        raise AutograderError(f"{path}: missing the [student_repository] table")
    values = {}
    for key, pattern in (("host", _HOST), ("owner", _NAME), ("name", _NAME), ("ref", _REF)):
        value = repo.get(key)
        if not isinstance(value, str) or not value.strip():
            raise AutograderError(f"{path}: [student_repository] {key} must be a non-empty string")
        value = value.strip()
        if not pattern.fullmatch(value) or ".." in value or value.endswith((".", "/")):
            raise AutograderError(
                f"{path}: [student_repository] {key} = {value!r} is not a valid {key}"
            )
        values[key] = value
    if values["name"].endswith(".git"):
        values["name"] = values["name"][:-4]
    holder = data.get("edition", {}).get("license_holder", CourseIdentity.license_holder)
    if not isinstance(holder, str) or not holder.strip() or "\n" in holder:
        raise AutograderError(f"{path}: [edition] license_holder must be a one-line string")
    return CourseIdentity(**values, license_holder=holder.strip(), config=path)


def placeholder_message(identity: CourseIdentity) -> str:
    where = identity.config or CONFIG_FILE
    return (
        f"the course identity is still the placeholder {identity.repo_url} (a repository "
        f"that does not exist): set [student_repository] owner, name and ref in {where} to "
        "the public student repository and the tag students install"
    )


def problems(identity: CourseIdentity) -> list[tuple[str, str]]:
    """``[(level, message), ...]`` about the identity; level ``"error"`` or ``"warning"``."""
    found = []
    if identity.is_placeholder:
        found.append(("error", placeholder_message(identity)))
    if identity.ref in BRANCH_NAMES:
        found.append(
            (
                "warning",
                f"ref = {identity.ref!r} looks like a branch: students' installs "
                "will change under them; pin a tag (e.g. v1.0.0) or a commit",
            )
        )
    if identity.host != "github.com":
        found.append(
            (
                "warning",
                f"host = {identity.host!r}: the Open in Colab badges only open "
                "notebooks from github.com",
            )
        )
    return found


__all__ = [
    "CONFIG_FILE",
    "PLACEHOLDER_URL",
    "TOKENS",
    "CourseIdentity",
    "load",
    "problems",
    "placeholder_message",
]
