# Two commands for a newcomer: `make run` and `make test`. Needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint format bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m pmd_service dev

test: $(STAMP)
	$(PY) -m pytest --cov=pmd_service --cov-branch --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark under bench/, then docs/benchmarks.md and docs/plots/*.png rewritten from
# their figures (bench/run_all.py; each run is time-bounded, ~15 minutes in all).
bench: $(STAMP)
	$(PY) -m bench.run_all $(BENCH_ARGS)

# The page tests in Chromium, saving the README's screenshots under docs/screenshots.
screenshots: $(STAMP)
	PMD_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_page_browser.py

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
