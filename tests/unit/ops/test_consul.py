"""bus.consul against the fake Consul agent of tests/support/consul.py (its four HTTP
endpoints, on loopback)."""
import os
import subprocess
import sys
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
from nameko.containers import ServiceContainer
from nameko.rpc import rpc

from bus.config import PROJECT_ROOT
from bus.consul import ConsulRegistration, client, kv_environment, overlay
from tests.support.consul import FakeConsul, Users
from tests.support.secantus import free_port
from tests.support.waiting import wait_for


@pytest.fixture
def fake_consul():
    fake = FakeConsul().start()
    yield fake
    fake.stop()


class Gateway:
    name = "gateway"
    consul = ConsulRegistration(ttl_seconds=0.3, address_setting="WEB_SERVER_ADDRESS")

    @rpc
    def health(self):
        return "ok"


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
        assert wait_for(lambda: fake_consul.checks[registration.check_id]["passes"] >= 3, timeout=5)
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
        assert wait_for(lambda: registration.service_id in fake_consul.services, timeout=5)
        assert wait_for(lambda: fake_consul.checks[registration.check_id]["passes"] >= 1, timeout=5)
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
            assert wait_for(lambda: registration.service_id in fake.services, timeout=5)
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
