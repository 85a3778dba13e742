"""bus.consul against a fake Consul agent: the four HTTP endpoints it uses, on loopback.

There is no Consul binary here, so the fake implements the documented contract of
exactly those endpoints (register with a TTL check, pass, deregister, KV recurse),
including Consul's habits that matter: keys are case-insensitive in a registration,
a TTL check starts critical, an unknown check is a 404, KV values are base64 and a
read carries X-Consul-Index.
"""
import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from nameko.containers import ServiceContainer
from nameko.rpc import rpc

from bus.config import PROJECT_ROOT
from bus.consul import ConsulRegistration, client, kv_environment, overlay
from tests.support.secantus import free_port


class FakeConsul:
    def __init__(self):
        self.services = {}  # id -> registration (keys lower-cased)
        self.checks = {}  # check id -> {"status", "service_id", "passes"}
        self.kv = {}  # key -> bytes
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.handle(self, "PUT", body)

            def do_GET(self):
                fake.handle(self, "GET", b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request, method, body):
        url = urlsplit(request.path)
        path, query = url.path, parse_qs(url.query)
        with self.lock:
            self.requests.append((method, path))
            status, payload, headers = self.route(method, path, query, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def route(self, method, path, query, body):
        if method == "PUT" and path == "/v1/agent/service/register":
            service = {k.lower(): v for k, v in json.loads(body).items()}
            service_id = service.get("id") or service["name"]
            self.services[service_id] = service
            checks = service.get("checks") or ([service["check"]] if "check" in service else [])
            for check in checks:
                check = {k.lower(): v for k, v in check.items()}
                check_id = check.get("checkid") or f"service:{service_id}"
                self.checks[check_id] = {"status": "critical", "service_id": service_id,
                                         "passes": 0, "definition": check}
            return 200, None, {}
        if method == "PUT" and path.startswith("/v1/agent/check/pass/"):
            check = self.checks.get(path.rsplit("/", 1)[1])
            if check is None:
                return 404, None, {}
            check["status"], check["passes"] = "passing", check["passes"] + 1
            return 200, None, {}
        if method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
            service_id = path.rsplit("/", 1)[1]
            if self.services.pop(service_id, None) is None:
                return 404, None, {}
            self.checks = {k: c for k, c in self.checks.items() if c["service_id"] != service_id}
            return 200, None, {}
        if method == "GET" and path.startswith("/v1/kv/"):
            key = path[len("/v1/kv/"):]
            if "recurse" in query:
                matches = sorted(k for k in self.kv if k.startswith(key))
            else:
                matches = [key] if key in self.kv else []
            if not matches:
                return 404, None, {"X-Consul-Index": "1"}
            items = [{"Key": k, "Flags": 0, "CreateIndex": 1, "ModifyIndex": 1, "LockIndex": 0,
                      "Value": None if self.kv[k] is None
                      else base64.b64encode(self.kv[k]).decode()} for k in matches]
            return 200, items, {"X-Consul-Index": "7"}
        return 405, None, {}


@pytest.fixture
def fake_consul():
    fake = FakeConsul().start()
    yield fake
    fake.stop()


class Users:
    name = "users"
    consul = ConsulRegistration(ttl_seconds=0.3)

    @rpc
    def health(self):
        return "ok"


class Gateway:
    name = "gateway"
    consul = ConsulRegistration(ttl_seconds=0.3, address_setting="WEB_SERVER_ADDRESS")

    @rpc
    def health(self):
        return "ok"


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def container(service_cls, **config):
    # No start(): only the provider's own lifecycle is exercised, so no broker is needed.
    return ServiceContainer(service_cls, {"AMQP_URI": "memory://", **config})


def provider(container_):
    return next(d for d in container_.dependencies if isinstance(d, ConsulRegistration))


def run_provider(container_):
    """setup + start the ConsulRegistration alone, as the container would."""
    registration = provider(container_)
    registration.setup()
    registration.start()
    return registration


def test_registers_passes_ttl_and_deregisters(fake_consul):
    users = container(Users, CONSUL_HTTP_ADDR=fake_consul.address)
    registration = run_provider(users)
    try:
        assert registration.service_id in fake_consul.services
        service = fake_consul.services[registration.service_id]
        assert service["name"] == "users"
        check = fake_consul.checks[registration.check_id]
        assert check["definition"]["ttl"] == "0.3s"
        assert check["definition"]["deregistercriticalserviceafter"]
        # the managed greenthread keeps the check passing (every ttl/3)
        assert wait_until(lambda: fake_consul.checks[registration.check_id]["passes"] >= 3)
        assert check["status"] == "passing"
    finally:
        registration.stop()
    assert fake_consul.services == {}
    assert ("PUT", f"/v1/agent/service/deregister/{registration.service_id}") \
        in fake_consul.requests
    passes = fake_consul.requests.count(("PUT", f"/v1/agent/check/pass/{registration.check_id}"))
    time.sleep(0.3)  # the heartbeat stopped with the container
    assert fake_consul.requests.count(
        ("PUT", f"/v1/agent/check/pass/{registration.check_id}")) == passes


def test_instances_get_their_own_ids_and_the_gateway_its_address(fake_consul):
    gateway = container(Gateway, CONSUL_HTTP_ADDR=f"http://{fake_consul.address}",
                        WEB_SERVER_ADDRESS="127.0.0.1:8123")
    registration = run_provider(gateway)
    try:
        service = fake_consul.services[registration.service_id]
        assert service["address"] == "127.0.0.1" and service["port"] == 8123
        assert registration.service_id.startswith("gateway-")
    finally:
        registration.stop()


def test_wildcard_bind_address_is_not_registered(fake_consul):
    gateway = container(Gateway, CONSUL_HTTP_ADDR=fake_consul.address,
                        WEB_SERVER_ADDRESS="0.0.0.0:8000")
    registration = run_provider(gateway)
    try:
        service = fake_consul.services[registration.service_id]
        assert "address" not in service and service["port"] == 8000
    finally:
        registration.stop()


def test_registers_again_when_the_agent_forgets(fake_consul):
    registration = run_provider(container(Users, CONSUL_HTTP_ADDR=fake_consul.address))
    try:
        with fake_consul.lock:  # e.g. the agent restarted without its state
            fake_consul.services.clear()
            fake_consul.checks.clear()
        assert wait_until(lambda: registration.service_id in fake_consul.services)
        assert wait_until(lambda: fake_consul.checks[registration.check_id]["passes"] >= 1)
    finally:
        registration.stop()


def test_consul_down_does_not_stop_the_service_and_it_registers_later():
    port = free_port()
    registration = run_provider(container(Users, CONSUL_HTTP_ADDR=f"127.0.0.1:{port}"))
    try:
        assert registration.registered is False  # start() returned anyway
        fake = FakeConsul()
        fake.server.server_close()
        fake.server = ThreadingHTTPServer(("127.0.0.1", port), fake.server.RequestHandlerClass)
        fake.thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
        fake.start()
        try:
            assert wait_until(lambda: registration.service_id in fake.services)
        finally:
            fake.stop()
    finally:
        registration.stop()


def test_no_consul_addr_is_a_no_op(fake_consul):
    registration = run_provider(container(Users, CONSUL_HTTP_ADDR=""))
    registration.stop()
    assert registration.consul is None
    assert fake_consul.requests == []


def test_kv_environment_reads_the_service_folder(fake_consul):
    fake_consul.kv.update({
        "eventpost/users/": None,  # the folder key the UI creates
        "eventpost/users/ACCESS_TOKEN_TTL": b"600",
        "eventpost/users/JWT_SECRET": "s\u00e9cret".encode(),
        "eventpost/users/nested/KEY": b"ignored",
        "eventpost/users/bad-name": b"ignored",
        "eventpost/usersx/OTHER": b"not ours",
        "eventpost/events/RPC_TIMEOUT": b"9",
    })
    env = kv_environment(client(fake_consul.address), "users")
    assert env == {"ACCESS_TOKEN_TTL": "600", "JWT_SECRET": "s\u00e9cret"}
    assert ("GET", "/v1/kv/eventpost/users/") in fake_consul.requests


def test_overlay_without_consul_keeps_the_environment():
    assert overlay("users", environ={"A": "1"}) == {"A": "1"}


def test_overlay_with_no_keys_and_kv_overrides_env(fake_consul):
    environ = {"CONSUL_HTTP_ADDR": fake_consul.address, "RPC_TIMEOUT": "5"}
    assert overlay("users", environ=environ) == environ
    fake_consul.kv["eventpost/users/RPC_TIMEOUT"] = b"9"
    assert overlay("users", environ=environ)["RPC_TIMEOUT"] == "9"


def run_exec(service, env, *command):
    return subprocess.run(
        [sys.executable, "-m", "bus.consul", "exec", "--service", service, "--wait", "2",
         "--", *command],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )


PRINT_CONFIG = ("import bus.config as c; cfg = c.load(); "
                "print(cfg['RPC_TIMEOUT'], cfg['ACCESS_TOKEN_TTL'])")


def test_exec_feeds_kv_into_config_yml(fake_consul):

    fake_consul.kv["eventpost/users/RPC_TIMEOUT"] = b"9"
    env = {**os.environ, "CONSUL_HTTP_ADDR": fake_consul.address, "ACCESS_TOKEN_TTL": "77"}
    env.pop("RPC_TIMEOUT", None)
    result = run_exec("users", env, sys.executable, "-c", PRINT_CONFIG)
    assert result.returncode == 0, result.stderr
    # from Consul KV, and from the environment where Consul has no key
    assert result.stdout.split() == ["9", "77"]


def test_exec_without_consul_just_execs():

    env = {k: v for k, v in os.environ.items() if k not in ("CONSUL_HTTP_ADDR", "RPC_TIMEOUT")}
    result = run_exec("users", env, sys.executable, "-c", PRINT_CONFIG)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "5"  # config.yml's default


def test_exec_fails_clearly_when_consul_does_not_answer():

    env = {**os.environ, "CONSUL_HTTP_ADDR": f"127.0.0.1:{free_port()}"}
    result = run_exec("users", env, sys.executable, "-c", "print('ran')")
    assert result.returncode != 0
    assert "cannot read eventpost/users/" in result.stderr
    assert "ran" not in result.stdout
