"""loadtests/query_counter: the idle benchmark's count of database commands per process,
loaded into a real process under eventlet, against a real SecantusDB server."""
import subprocess
import sys
import textwrap

import pytest

from bus.config import PROJECT_ROOT
from loadtests.procstat import COUNTER

pytestmark = pytest.mark.integration

CLIENT = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()  # as nameko run does: pymongo must still work after it
    import os, sys
    from pymongo import MongoClient
    db = MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)["counted"]
    db.things.insert_one({"n": 1})
    for _ in range(3):
        db.things.find_one({"n": 1})
    print(os.getpid())
""")


def run_client(mongo_uri, env):
    return subprocess.run([sys.executable, "-c", CLIENT, mongo_uri], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_every_command_of_the_process_is_counted_in_its_own_file(mongo_uri, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(COUNTER), "QUERY_COUNT_DIR": str(tmp_path)}
    done = run_client(mongo_uri, env)
    assert done.returncode == 0, done.stderr
    pid = done.stdout.strip().splitlines()[-1]
    lines = (tmp_path / f"{pid}.log").read_text().splitlines()
    commands = [line.split()[1] for line in lines]
    assert commands.count("find") == 3
    assert commands.count("insert") == 1
    assert all(float(line.split()[0]) > 0 for line in lines)


def test_without_the_setting_nothing_is_counted(mongo_uri, tmp_path):
    done = run_client(mongo_uri, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(COUNTER)})
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
