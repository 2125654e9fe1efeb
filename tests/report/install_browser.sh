#!/usr/bin/env bash
# Install headless Chromium (Debian package `chromium`) for the report's browser test.
# Never fails the caller: when it cannot install, it says why and the browser test is skipped.
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium not installed: apt-get is not available on this machine (the browser test will be skipped)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "chromium not installed: installing needs root (or passwordless sudo) (the browser test will be skipped)"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -q >/tmp/dlkit-apt.log 2>&1; then
    echo "chromium not installed: apt-get update failed ($(tail -n 1 /tmp/dlkit-apt.log)) (the browser test will be skipped)"
    exit 0
fi
if ! $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >>/tmp/dlkit-apt.log 2>&1; then
    echo "chromium not installed: apt-get install failed ($(tail -n 1 /tmp/dlkit-apt.log)) (the browser test will be skipped)"
    exit 0
fi
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null)"
exit 0
