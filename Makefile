# Two commands for a newcomer: `make run` and `make test`. Needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# Two installs from the hashed locks under requirements/ (scripts/lock.sh says which is which):
# `make run` needs the runtime and the embedded servers only; tests, lint, benchmarks and the
# page tests' browser driver come with the first `make test`/`make lint`.
STAMP     := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
UV_VERSION := 0.13.9

.PHONY: run test lint format bench screenshots lock clean

# The locks go in with uv, which installs them several times faster than pip, or with pip where
# uv cannot be had (no wheel for the platform) or cannot install them (it reads no pip.conf).
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv==$(UV_VERSION) || $(PY) -m pip install --quiet --upgrade pip
INSTALL = $(VENV)/bin/uv pip install --quiet --python $(PY) $(1) 2>/dev/null \
	|| $(PY) -m pip install --quiet $(1)

$(RUN_STAMP): requirements/run.txt pyproject.toml | $(PY)
	$(call INSTALL,--require-hashes -r requirements/run.txt)
	$(call INSTALL,--no-deps -e .)
	touch $(RUN_STAMP)

$(STAMP): requirements/dev.txt pyproject.toml | $(PY)
	$(call INSTALL,--require-hashes -r requirements/dev.txt)
	$(call INSTALL,--no-deps -e .)
	touch $(STAMP)

# Dev mode, asked for explicitly: embedded PostgreSQL and Redis, a per-checkout JWT secret.
# DEMO_LOCALE=es: the demo user's emails in that language (`dev --locale`).
run: $(RUN_STAMP)
	PMD_DEV=1 $(PY) -m pmd_service dev $(if $(DEMO_LOCALE),--locale '$(DEMO_LOCALE)')

# The suite and the benchmarks start hundreds of Python processes of this code: each reads the
# bytecode cache the first wrote, even where the environment turned writing it off.
test bench screenshots: export PYTHONDONTWRITEBYTECODE :=

# The suite in TEST_WORKERS pytest-xdist workers (tests/conftest.py says what each has of its
# own); eight, since its tests wait on processes and timeouts more than they compute;
# TEST_WORKERS=0 runs it in this one process.
# COVERAGE=1 adds a branch-coverage report of the package at the end (CI asks for it): off by
# default, as Python 3.11's tracer weighs on every test that runs the app in process.
TEST_WORKERS ?= 8
COVERAGE ?=
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS) \
		$(if $(COVERAGE),--cov=pmd_service --cov-branch --cov-report=term:skip-covered)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pmd_service.web.event_kinds --check  # the event payloads' generated SQL is current
	$(PY) -m pmd_service.web.filter_keys --check  # the page's generated filter keys are current
	$(PY) -m pmd_service.web.action_words --check  # the page's generated action words are current
	$(PY) -m pmd_service.core.codes --check  # docs/errors.md's codes table is current
	$(PY) -m support.migration_check  # no migration since the last release breaks it (docs/operations.md)
	$(PY) -m bench.report --check  # the docs/ pages are renders naming only commits their saved outputs record, each a run git knows
	$(PY) -m pytest -q -p no:cacheprovider --no-cov tests/tooling/test_code_map.py  # every path docs/architecture.md names exists
	$(PY) -m pytest -q -p no:cacheprovider --no-cov tests/tooling/test_budgets.py  # the harness, tests/*.py and the docs within their sizes; few repeats; no import circle

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Every benchmark under bench/, then docs/benchmarks.md and docs/scaling.md rewritten from
# their figures, committed in bench/figures/ (bench/run_all.py; each run is time-bounded:
# `python -m bench.run_all --help` lists the bounds and what each took last;
# BENCH_ARGS=--report-only renders the pages without running any).
bench: $(STAMP)
	$(PY) -m bench.run_all $(BENCH_ARGS)

# The page tests in Chromium, saving the README's screenshots under docs/screenshots.
screenshots: $(STAMP)
	PMD_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/browser/test_page_browser.py tests/browser/test_page_exports.py \
		tests/browser/test_page_filters.py tests/browser/test_export_gallery_browser.py tests/browser/test_page_keep.py \
		tests/browser/test_page_table.py tests/browser/test_page_layout.py tests/browser/test_page_cleanup.py

# The locks again, from pyproject.toml: after changing a dependency (LOCK_ARGS=--upgrade moves
# every pin to the newest release its range allows).
lock: | $(PY)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	bash scripts/lock.sh $(LOCK_ARGS)

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
