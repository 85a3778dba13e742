"""tools.system.System on a stand-in project: real processes, RabbitMQ, SecantusDB, sink.

The stand-in services are tiny, so this tests the launcher (start order, environment,
health wait, process groups, stop within 10 s), not EventPost's services; the e2e
tests run the real ones through the same launcher.
"""
import shutil
import time

import pytest
import requests

from bus.config import PROJECT_ROOT
from tests.support.secantus import free_port
from tools.system import StartError, System, live_group_members

pytestmark = pytest.mark.integration

GATEWAY = '''
import json, os, time
from nameko.web.handlers import http

STARTED = time.monotonic()

class Gateway:
    name = "standin_gateway"

    @http("GET", "/health")
    def health(self, request):
        if time.monotonic() - STARTED < 2:  # like the real one: not before services answer
            return 503, "{}"
        keys = ["MONGO_URI", "SMTP_HOST", "SMTP_PORT", "JWT_SECRET", "AMQP_URI", "EXTRA"]
        return 200, json.dumps({k: os.environ.get(k) for k in keys})
'''
USERS = '''
from nameko.rpc import rpc

class Users:
    name = "standin_users"

    @rpc
    def ping(self):
        return "pong"
'''


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "project"
    (root / "services").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "config.yml", root / "config.yml")
    (root / "services" / "__init__.py").write_text("")
    for name, code in [("gateway", GATEWAY), ("users", USERS)]:
        (root / "services" / name).mkdir()
        (root / "services" / name / "__init__.py").write_text("")
        (root / "services" / name / "service.py").write_text(code)
    return root


def make_system(project, rabbit_config, mongo_uri="", **kwargs):
    """``mongo_uri`` empty: the launcher starts its own SecantusDB (and needs ~4 s to
    stop it); the tests that are not about that one pass the session's server."""
    return System(
        root=project, var_dir=project / "var",
        env={"AMQP_URI": rabbit_config["AMQP_URI"], "EXTRA": "yes", "MONGO_URI": mongo_uri,
             "SMTP_HOST": "", "JWT_SECRET": "", "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"},
        mongo_port=free_port(), smtp_port=free_port(), echo=lambda message: None, **kwargs,
    )


def alive(pid):
    return bool(live_group_members(pid))


def test_start_wait_healthy_and_stop_everything_within_10s(project, rabbit_config):
    system = make_system(project, rabbit_config, instances={"users": 2})
    system.start()
    try:
        names = [c.name for c in system.children]
        assert names == ["mongo", "mail-sink", "users", "users-2", "gateway"]
        env = requests.get(f"{system.base_url}/health", timeout=5).json()
        assert env["MONGO_URI"] == f"mongodb://127.0.0.1:{system.mongo_port}/"
        assert env["SMTP_HOST"] == "127.0.0.1" and env["SMTP_PORT"] == str(system.smtp_port)
        assert env["JWT_SECRET"] == (project / "var" / "jwt_secret").read_text().strip()
        assert env["AMQP_URI"] == rabbit_config["AMQP_URI"] and env["EXTRA"] == "yes"
        assert (project / "var" / "log" / "users-2.log").exists()
        pids = [c.process.pid for c in system.children]
    finally:
        began = time.monotonic()
        system.stop()
        took = time.monotonic() - began
    assert took < 10
    assert not [pid for pid in pids if alive(pid)]


def test_a_service_that_dies_at_start_is_reported_and_nothing_is_left(project, rabbit_config, mongo_uri):
    (project / "services" / "users" / "service.py").write_text("raise ImportError('broken')\n")
    system = make_system(project, rabbit_config, mongo_uri)
    with pytest.raises(StartError) as error:
        system.start()
    assert "users exited" in str(error.value) and "broken" in str(error.value)
    assert system.children == []


def test_an_occupied_gateway_port_is_refused(project, rabbit_config, mongo_uri):
    first = make_system(project, rabbit_config, mongo_uri, services=["gateway"])
    first.start()
    try:
        second = make_system(project, rabbit_config, mongo_uri, services=["gateway"])
        second.env["WEB_SERVER_ADDRESS"] = first.env["WEB_SERVER_ADDRESS"]
        second.var_dir = project / "var2"
        with pytest.raises(StartError, match="already listens"):
            second.start()
    finally:
        first.stop()


def test_with_consul_each_service_starts_under_the_kv_overlay(project, rabbit_config, mongo_uri):
    from tests.unit.ops.test_consul import FakeConsul

    fake = FakeConsul().start()
    fake.kv["eventpost/gateway/EXTRA"] = b"from-consul"
    try:
        system = make_system(project, rabbit_config, mongo_uri, services=["gateway"])
        system.env["CONSUL_HTTP_ADDR"] = fake.address
        system.start()
        try:
            env = requests.get(f"{system.base_url}/health", timeout=5).json()
        finally:
            system.stop()
        assert env["EXTRA"] == "from-consul"
        assert ("GET", "/v1/kv/eventpost/gateway/") in fake.requests
    finally:
        fake.stop()
