"""ConsulRegistration inside a real service container on RabbitMQ (fake Consul agent)."""
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from tests.support.consul import FakeConsul, Users
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


def test_service_registers_while_it_runs(rabbit_config, container_factory):
    fake = FakeConsul().start()
    try:
        container = container_factory(Users, {**rabbit_config, "CONSUL_HTTP_ADDR": fake.address})
        container.start()
        with ServiceRpcProxy("users", rabbit_config) as users:
            assert users.health() == "ok"
        assert [s["name"] for s in fake.services.values()] == ["users"]
        check_id = next(iter(fake.checks))
        assert wait_for(lambda: fake.checks[check_id]["passes"] >= 2, timeout=5)
        container.stop()
        assert fake.services == {} and fake.checks == {}
    finally:
        fake.stop()
