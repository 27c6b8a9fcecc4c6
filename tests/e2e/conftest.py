"""Fixtures of the end-to-end tests beside tests/conftest.py's daemons."""

import os
import subprocess

import pytest


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def network():
    """Test hosts (tests/hosts.py), all torn down after, also when the test fails; what could
    not be is an error. Skipped where they cannot be made, but never on CI (CI=true, or
    JINAD_TEST_HOSTS=required as .ci/run sets)."""
    from tests.hosts import Network, cannot_make_hosts

    reason = cannot_make_hosts()
    if reason:
        if os.environ.get("CI") == "true" or os.environ.get("JINAD_TEST_HOSTS") == "required":
            pytest.fail(f"CI must run the test hosts' tests: {reason}")
        pytest.skip(reason)
    made = Network()
    try:
        yield made
    finally:
        left = made.close()
    assert not left, f"left behind: {left}"
