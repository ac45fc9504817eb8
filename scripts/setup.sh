#!/usr/bin/env bash
# Installs what the tests need beyond the Rust toolchain: a Python virtualenv with a real
# EPICS IOC (softioc, EPICS base 7) and a real CA client (pyepics), used by the Channel
# Access integration tests, and aapy (a Python archiver client from PyPI, with the protobuf
# it needs) for the real-client test (tests/aapy_client.rs), and p4p (pvAccess server and
# client on pvxs) for the PVA tests (tests/pva_*.rs), and Debian's Chromium for the web
# UI's browser tests (tests/ui_browser.rs). Idempotent. The venv lives at $ARCHIVER_TEST_VENV
# (default /tmp/archiver-test-venv).
set -euo pipefail
venv="${ARCHIVER_TEST_VENV:-/tmp/archiver-test-venv}"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
if ! "$venv/bin/python" -c 'import softioc, epics' >/dev/null 2>&1; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        softioc==4.7.2 epicscorelibs==7.0.10.99.0.2 pvxslibs==1.5.3 epicsdbbuilder==1.5 \
        setuptools_dso==2.12.4 numpy==2.4.6 pyepics==3.5.10
fi
if ! "$venv/bin/python" -c 'import aa.pb, aa.js' >/dev/null 2>&1; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check aapy==0.12 protobuf==3.20.3
fi
if ! "$venv/bin/python" -c 'import p4p' >/dev/null 2>&1; then
    # p4p (pvxs-based): the PVA server of the custom-structure/NTTable tests and the
    # reference client of the PVA benchmark
    "$venv/bin/pip" install --quiet --disable-pip-version-check p4p==4.3.0
fi
# Chromium (Debian's package) for the web UI's browser tests (tests/ui_browser.rs), which
# drive it headless over the DevTools protocol. Skipped when it is already installed.
if ! command -v chromium >/dev/null 2>&1; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
fi
"$venv/bin/python" -c 'import softioc, epics, aa.pb, p4p; print("test venv ready:", softioc.__version__)'
