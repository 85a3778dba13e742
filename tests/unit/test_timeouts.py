"""A test over its timeout fails and the run goes on to the next (tests/conftest.py's
pytest_timeout_set_timer), whether it sleeps, spins or waits on green I/O."""
import os
import subprocess
import sys

from tools.system import PROJECT_ROOT

PROBE = '''
import time

import eventlet.event
import pytest


@pytest.mark.timeout(1)
def test_sleeps():
    time.sleep(30)


@pytest.mark.timeout(1)
def test_spins():
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pass


@pytest.mark.timeout(1)
def test_waits_for_an_event():
    eventlet.event.Event().wait()


def test_after_them():
    pass
'''


def test_a_timed_out_test_fails_and_the_run_continues(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(PROJECT_ROOT / "setup.cfg"),
         "--rootdir", str(tmp_path), "-p", "pytest_timeout", "-p", "tests.conftest",
         "-p", "no:cacheprovider",
         "-q", str(probe)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=90,
        # only pytest-timeout and our conftest: tests.conftest patches eventlet before
        # the other entry-point plugins would load, and some (anyio and hypothesis,
        # through trio) cannot be imported on patched sockets
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else ""
    assert "3 failed, 1 passed" in summary, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("Failed: Timeout >1.0s") >= 3, result.stdout[-3000:]
