# Thin targets over the project's own commands. Every target sets up what it needs, once.
#   make demo   - offline demo: fixtures, release, grade a handful of submissions (smoke profile)
#   make test   - the whole test suite (what CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# nbgrader needs `alembic` (and jupyter) on PATH: put the venv's bin first.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONPATH := $(CURDIR)
export MPLBACKEND ?= Agg
PYTEST_ARGS ?=

.PHONY: setup demo test release lab fixtures bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[course,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m autograder demo

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

release: $(STAMP)
	$(PY) -m autograder release

fixtures: $(STAMP)
	$(PY) data_scripts/make_fixtures.py

bench: $(STAMP)
	$(PY) bench/extract.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

lint: $(STAMP)
	$(VENV)/bin/ruff check src autograder data_scripts tests bench

clean:
	rm -rf submitted autograded feedback gradebook.db demo build .pytest_cache
