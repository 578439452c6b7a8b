#!/usr/bin/env bash
# Debian's Chromium for the report's browser test (tests/cli/test_report_browser.py), which
# Playwright drives at /usr/bin/chromium; Playwright's own browser downloads are not used.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo) to install.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser.sh: chromium installed but /usr/bin/chromium is missing" >&2
    exit 1
fi
