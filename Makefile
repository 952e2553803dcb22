# Thin targets over the project's own commands. Every target sets up what it needs, once.
#   make demo   - offline demo: fixtures, release, grade a handful of submissions (smoke profile)
#   make test   - lint (ruff check + ruff format --check) then the whole test suite (what CI runs)
#   make edition - the student repository in build/student-edition (README, Instructors)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# nbgrader needs `alembic` (and jupyter) on PATH: put the venv's bin first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export MPLBACKEND ?= Agg
PYTEST_ARGS ?=

.PHONY: setup sandbox-tools browser-tools demo test release edition lab fixtures bench lint clean

setup: $(STAMP) sandbox-tools browser-tools

# The grading sandbox needs bubblewrap (Debian/Ubuntu package): installed when we are root.
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; \
	  else echo "note: install bubblewrap (apt-get install bubblewrap): grading refuses untrusted code without it"; fi; }

# The browser tests (tests/test_browser.py: formgrader, the question page, JupyterLab) drive
# Debian's chromium with selenium: installed when we are root; skipped (saying why) without it.
browser-tools:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	      || echo "note: could not install chromium: the browser tests will be skipped"; \
	  else echo "note: install chromium and chromium-driver (apt-get install chromium chromium-driver): the browser tests are skipped without them"; fi; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[course,dev]"
	touch $(STAMP)

demo: $(STAMP) sandbox-tools
	$(PY) -m autograder demo

test: $(STAMP) sandbox-tools browser-tools lint
	$(PY) -m pytest $(PYTEST_ARGS)

release: $(STAMP)
	$(PY) -m autograder release

# The student repository (notebooks + featurelab package, no solutions) for the course identity
# of autograder/course.toml: a fresh git repository, one commit tagged with its ref.
EDITION_DIR ?= build/student-edition
edition: $(STAMP)
	rm -rf $(EDITION_DIR)
	$(PY) -m autograder release --student $(EDITION_DIR) --git

fixtures: $(STAMP)
	$(PY) data_scripts/make_fixtures.py

bench: $(STAMP)
	$(PY) bench/extract.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf submitted autograded feedback gradebook.db demo build .pytest_cache
