# Herald's two set-up commands (see README.md).  Both create .venv/ and install into it.
PY ?= python3
VENV := .venv
DAY := 2026-11-30

.PHONY: demo test clean

# Install Herald and run the daily job on the example day shipped in examples/.
demo:
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	$(VENV)/bin/herald run --config examples/herald.toml --date $(DAY) --summary-json var/summary-$(DAY).json

# Install the test dependencies (and the services the tests need) and run the whole suite.
test:
	bash scripts/test.sh

clean:
	rm -rf var test-output .pytest_cache
