"""ConsulRegistration inside a real service container on RabbitMQ (fake Consul agent)."""
import pytest
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from bus.consul import ConsulRegistration
from tests.unit.ops.test_consul import FakeConsul, wait_until

pytestmark = pytest.mark.integration


class Users:
    name = "users"
    consul = ConsulRegistration(ttl_seconds=0.3)

    @rpc
    def health(self):
        return "ok"


def test_service_registers_while_it_runs(rabbit_config, container_factory):
    fake = FakeConsul().start()
    try:
        container = container_factory(Users, {**rabbit_config, "CONSUL_HTTP_ADDR": fake.address})
        container.start()
        with ServiceRpcProxy("users", rabbit_config) as users:
            assert users.health() == "ok"
        assert [s["name"] for s in fake.services.values()] == ["users"]
        check_id = next(iter(fake.checks))
        assert wait_until(lambda: fake.checks[check_id]["passes"] >= 2)
        container.stop()
        assert fake.services == {} and fake.checks == {}
    finally:
        fake.stop()
