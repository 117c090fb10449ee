#!/usr/bin/env bash
# Install Herald with its test dependencies into .venv, make sure the services the tests use are
# up (PostgreSQL on 127.0.0.1:5432; Java 17 for the Spark engine tests, installed from Debian by
# services.sh when `java` is missing; Chromium for the browser tests), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
$PY -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[test]"
bash scripts/services.sh
if [ -f scripts/ci_install_browser.sh ]; then bash scripts/ci_install_browser.sh; fi
mkdir -p test-output
exec .venv/bin/python -m pytest -q "$@"
