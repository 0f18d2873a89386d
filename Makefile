# Targets named in the README. `make setup` builds .venv from scratch, `make test` runs the
# suite (what CI runs), `make lint` checks style, `make demo` runs the detector on the sample.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TF_EXTRA ?= cpu

.PHONY: setup test test-slow lint demo clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

setup: $(PY)
	$(PY) -m pip install -q -e ".[$(TF_EXTRA),serve,dev]"

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check .

demo: setup
	$(VENV)/bin/dfd detect dfd_app/samples --plot out/demo-plots

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
