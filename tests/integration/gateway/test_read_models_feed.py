"""The gateway's read models on real RabbitMQ: a snapshot at start, live messages, and a
catch-up after the broker drops the connection that repairs what was missed meanwhile.

The backing services are stand-ins: `events` answers all_events from EVENTS, which a
test changes behind the gateway's back (as if messages were lost)."""
import uuid

import pytest
from nameko.rpc import rpc
from nameko.standalone.events import event_dispatcher

from bus.errors import NotFound
from bus.messages import new_message
from services.gateway.feed import CONNECTION_NAME
from services.gateway.service import GatewayService
from tests.integration.gateway.conftest import Client
from tests.support.waiting import wait_for

EVENTS = {}


def event(title, version=1):
    event_id = uuid.uuid4().hex
    return {"id": event_id, "title": title, "description": "", "topics": ["feed"],
            "starts_at": "2031-05-01T19:00:00Z", "ends_at": None, "timezone": "UTC",
            "place": None, "organizer": None, "status": "scheduled", "version": version,
            "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-01T00:00:00Z"}


class EventsStandIn:
    name = "events"

    @rpc
    def all_events(self, after_id=None, limit=500):
        return [e for i, e in sorted(EVENTS.items()) if after_id is None or i > after_id][:limit]

    @rpc
    def get(self, event_id):
        raise NotFound("No such event.")


class UsersStandIn:
    name = "users"

    @rpc
    def all_accounts(self, after_id=None, limit=500):
        return []


@pytest.fixture
def gateway(start_service, gateway_config):
    EVENTS.clear()
    start_service(EventsStandIn)
    start_service(UsersStandIn)

    def start():
        start_service(GatewayService)
        return Client(f"http://{gateway_config['WEB_SERVER_ADDRESS']}/")

    return start


def titles(client):
    """The titles the gateway lists; None while it has no snapshot yet (it would ask the
    search service, which these tests do not run)."""
    response = client.get("/events?topic=feed")
    return sorted(e["title"] for e in response.json()["items"]) if response.ok else None


def publish(config, kind, item):
    dispatch = event_dispatcher(config)
    dispatch("events", kind, new_message("events", kind, item["id"], item["version"],
                                         event=item, **({"changed": [], "previous": {}}
                                                        if kind == "event_updated" else {})))


def test_it_starts_from_a_snapshot_then_follows_live_messages(gateway, gateway_config):
    first = event("From the snapshot")
    EVENTS[first["id"]] = first
    client = gateway()
    assert wait_for(lambda: titles(client) == ["From the snapshot"])
    second = event("From a message")
    publish(gateway_config, "event_created", second)
    assert wait_for(lambda: titles(client) == ["From a message", "From the snapshot"])
    publish(gateway_config, "event_updated", dict(second, title="Changed", version=2))
    publish(gateway_config, "event_updated", dict(second, title="Stale", version=1))
    assert wait_for(lambda: titles(client) == ["Changed", "From the snapshot"])


def test_after_a_lost_connection_it_catches_up_on_what_it_missed(gateway, gateway_config,
                                                                rabbit_manager):
    kept, deleted = event("Kept"), event("Deleted while away")
    EVENTS.update({kept["id"]: kept, deleted["id"]: deleted})
    client = gateway()
    assert wait_for(lambda: titles(client) == ["Deleted while away", "Kept"])

    # while the gateway is not listening: one event created, one deleted, one changed
    missed = event("Created while away")
    EVENTS[missed["id"]] = missed
    del EVENTS[deleted["id"]]
    EVENTS[kept["id"]] = dict(kept, title="Kept, changed", version=2)
    def feeds():  # the management API lists a new connection within a few seconds
        return [c["name"] for c in rabbit_manager.get_connections()
                if c["vhost"] == gateway_config["vhost"]
                and c.get("client_properties", {}).get("connection_name") == CONNECTION_NAME]

    assert wait_for(feeds, timeout=20)
    rabbit_manager.delete_connection(feeds()[0])

    assert wait_for(lambda: titles(client) == ["Created while away", "Kept, changed"],
                    timeout=20)
    assert client.get(f"/events/{deleted['id']}").status_code == 404


def test_a_version_gap_starts_a_catch_up(gateway, gateway_config):
    item = event("Version one")
    EVENTS[item["id"]] = item
    other = event("Published nowhere")
    client = gateway()
    assert wait_for(lambda: titles(client) == ["Version one"])
    EVENTS[other["id"]] = other  # its event_created never reached the gateway
    publish(gateway_config, "event_updated", dict(item, title="Version three", version=3))
    assert wait_for(lambda: titles(client) == ["Published nowhere", "Version three"])
