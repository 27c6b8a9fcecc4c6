#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The dashboard test drives Debian's Chromium; without it (and without root to install it) it skips.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "could not install chromium; the dashboard test will skip"
fi
# The test hosts (tests/hosts.py) use iproute2 and iptables (a delaying relay's redirect, and the
# FORWARD rule dockerd makes necessary): install iptables where it is missing.
if ! command -v iptables >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq iptables >/dev/null) || echo "could not install iptables; the test hosts' tests will fail"
fi
.venv/bin/hadolint Dockerfile
# tests/e2e/test_docker.py builds and runs the image: as root, scripts/docker-image.sh installs
# docker.io and debootstrap when missing and starts (then stops) a dockerd of its own.
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means "no tests were collected": say so plainly rather than fail without a word.
if [ "$status" -eq 5 ]; then
    echo "0 passed, 0 failed: no tests collected"
    exit 0
fi
exit "$status"
