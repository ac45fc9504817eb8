#!/usr/bin/env bash
# The project's test command: formatting, lints, and every test of the workspace.
# Run scripts/setup.sh once first (it installs the Python IOC the CA tests use).
set -euo pipefail
cd "$(dirname "$0")/.."
export ARCHIVER_TEST_PYTHON="${ARCHIVER_TEST_PYTHON:-${ARCHIVER_TEST_VENV:-/tmp/archiver-test-venv}/bin/python}"
# Channel Access stays on loopback in every test.
export EPICS_CA_ADDR_LIST="${EPICS_CA_ADDR_LIST:-127.0.0.1}" EPICS_CA_AUTO_ADDR_LIST=NO
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
