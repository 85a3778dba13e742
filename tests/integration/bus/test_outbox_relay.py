"""The outbox relay as services run it: a real container, a real SecantusDB database
and real RabbitMQ with publisher confirms. What the broker confirmed is pulled from
the document, each document's messages go out in the order they were stored, many
documents go out in batches, and a publish the broker refuses (a queue that is full
and rejects publishes) stays in the document, with what follows it, until the
sweeper gets it through: none lost, none twice. (test_outbox_and_retry.py has the
consumers' side.)"""
import pytest
from kombu import Connection, Queue
from nameko.rpc import rpc
from nameko.standalone.events import get_event_exchange
from nameko.standalone.rpc import ServiceRpcProxy

from bus.messages import new_message
from bus.mongo import Mongo
from bus.outbox import PENDING, RELAY_CONNECTION_NAME, Outbox, outgoing
from tests.support.queues import take
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PROBE = "outbox-probe"


class Writer:
    """Stores ``count`` messages in a user document, as a command does, and hands the
    document to the relay (unless told not to, as if the process died right after)."""

    name = "users"
    db = Mongo()
    outbox = Outbox(["users"], sweep_every=0.2, grace_seconds=0.3)

    @rpc
    def store(self, user_ids, count=1):
        stored = []
        for user_id in user_ids:
            for n in range(count):
                message = new_message("users", "user_deleted", user_id, n + 1, user_id=user_id)
                self.db.users.update_one({"_id": user_id}, outgoing(message), upsert=True)
                stored.append(message["event_id"])
            self.outbox("users", user_id)
        return stored


def probe(config, **arguments):
    """A queue of our own on the users exchange, receiving every user_deleted."""
    with Connection(config["AMQP_URI"]) as connection:
        Queue(PROBE, exchange=get_event_exchange("users", config), routing_key="user_deleted",
              queue_arguments=arguments or None)(connection.channel()).declare()


def delete_probe(config):
    with Connection(config["AMQP_URI"]) as connection:
        connection.channel().queue_delete(PROBE)


def received(config, count, timeout=10):
    return [message["event_id"] for message in take(config, PROBE, count, timeout)]


@pytest.fixture
def writer(container_factory, service_config):
    probe(service_config)
    container = container_factory(Writer, service_config)
    container.start()
    with ServiceRpcProxy("users", service_config) as proxy:
        yield proxy, next(d for d in container.extensions if isinstance(d, Mongo)).database


def outbox_of(db, user_id):
    return [m["event_id"] for m in db.users.find_one({"_id": user_id}).get(PENDING, [])]


def test_each_documents_messages_go_out_in_order_and_are_pulled(writer, service_config):
    proxy, db = writer
    ids = proxy.store(["u1"], count=3)
    assert received(service_config, 3) == ids
    assert wait_for(lambda: outbox_of(db, "u1") == [])
    assert received(service_config, 1, timeout=0) == []  # once each


def test_a_document_changed_again_before_its_pull_sends_each_message_once(writer,
                                                                          service_config):
    proxy, db = writer
    # the second command comes within the relay's PULL_DELAY: the first message is out
    # and still in the document when the relay reads it again
    ids = [*proxy.store(["u1"]), *proxy.store(["u1"]), *proxy.store(["u1"])]
    assert received(service_config, 3) == ids
    assert wait_for(lambda: outbox_of(db, "u1") == [])
    assert received(service_config, 1, timeout=1) == []  # none twice


def test_many_documents_go_out_in_batches_and_leave_the_outbox_empty(writer, service_config):
    proxy, db = writer
    users = [f"u{n}" for n in range(Outbox.BATCH + 1)]  # more than one batch
    ids = proxy.store(users)
    assert sorted(received(service_config, len(ids), timeout=30)) == sorted(ids)
    assert wait_for(lambda: db.users.count_documents({f"{PENDING}.0": {"$exists": True}}) == 0)
    assert received(service_config, 1, timeout=0) == []


def test_a_refused_publish_stays_with_what_follows_it_until_the_sweeper_gets_it_through(
        writer, service_config):
    proxy, db = writer
    # room for one message; the broker nacks every publish beyond it
    delete_probe(service_config)
    probe(service_config, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    first, second, third = proxy.store(["u1"], count=3)
    # the first went out and was pulled; the second was refused, so it and the third
    # stay, in order, while the sweeper keeps trying
    assert wait_for(lambda: outbox_of(db, "u1") == [second, third])
    assert received(service_config, 1) == [first]  # makes room for one more
    assert wait_for(lambda: outbox_of(db, "u1") == [third])
    assert received(service_config, 1) == [second]
    assert wait_for(lambda: outbox_of(db, "u1") == [])
    assert received(service_config, 1) == [third]
    assert received(service_config, 1, timeout=0) == []


def test_after_the_broker_drops_the_relays_connection_what_follows_still_goes_out_once(
        writer, service_config, rabbit_manager):
    proxy, db = writer
    first = proxy.store(["u1"])
    assert received(service_config, 1) == first

    def relay_connections():  # the management API lists a connection within seconds
        return [c["name"] for c in rabbit_manager.get_connections()
                if c["vhost"] == service_config["vhost"]
                and c.get("client_properties", {}).get("connection_name")
                == RELAY_CONNECTION_NAME]

    assert wait_for(relay_connections, timeout=20)
    rabbit_manager.delete_connection(relay_connections()[0])

    later = proxy.store(["u1", "u2"])
    assert sorted(received(service_config, 2, timeout=20)) == sorted(later)
    assert wait_for(lambda: outbox_of(db, "u1") == [] and outbox_of(db, "u2") == [])
    assert received(service_config, 1, timeout=1) == []  # none twice
