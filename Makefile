# Two commands do all the set-up on a fresh machine:
#   make run    installs what is missing, then starts the web app on http://127.0.0.1:7860
#   make test   installs what is missing, then runs ruff, mypy and the fast tests
# Both are idempotent and take seconds once everything is installed.

VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
PY_SOURCES := diffbgm trainer webapp tests benchmarks migrations app.py

.PHONY: run test test-slow lint setup sysdeps cache train bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml scripts/headless_opencv.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	bash scripts/headless_opencv.sh $(PY)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# FluidSynth renders audio; Chromium drives the browser tests. Installed with apt when root.
sysdeps:
	@bash scripts/sysdeps.sh

setup: $(STAMP) sysdeps

run: setup
	$(PY) app.py

lint: $(STAMP)
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy diffbgm trainer webapp app.py

test: setup lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

cache: $(STAMP)
	$(PY) -m trainer cache

train: $(STAMP)
	$(PY) -m trainer train --preset small --resume

bench: $(STAMP)
	$(PY) benchmarks/model.py
	$(PY) benchmarks/video.py
	$(PY) benchmarks/e2e.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
