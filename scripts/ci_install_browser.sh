#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/web/test_browser*.py), idempotently.
# Playwright drives it through executable_path=/usr/bin/chromium; Playwright's own browser
# download is not used (and not reachable from CI).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $(chromium --version 2>/dev/null)"
