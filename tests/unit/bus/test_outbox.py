"""The outbox relay on a real SecantusDB database, with a stand-in for the broker: what
was confirmed is pulled, what was not stays for the sweeper, and a command never waits.
(tests/integration/bus has the same with real RabbitMQ.)"""
from types import SimpleNamespace

import pytest

from bus.messages import new_message
from bus.outbox import PENDING, Outbox, outgoing


class Broker:
    """Confirms every publish, except those of ``refuse`` (event ids): those raise."""

    def __init__(self, refuse=()):
        self.published = []
        self.refuse = set(refuse)

    def publish(self, message, **kwargs):
        if message["event_id"] in self.refuse:
            raise ConnectionError("broker unreachable")
        self.published.append(message["event_id"])


@pytest.fixture
def db(new_database):
    return new_database("users")


def outbox_on(db, broker):
    outbox = Outbox(["users"])
    outbox.mongo = SimpleNamespace(database=db)
    outbox.publisher, outbox.exchange = broker, None
    outbox._handed = {"users": {}}
    outbox._wake = SimpleNamespace(ready=lambda: True)
    outbox.get_message_headers = lambda worker_ctx: {}
    return outbox


def store(db, user_id, count):
    messages = [new_message("users", "user_deleted", user_id, n + 1, user_id=user_id)
                for n in range(count)]
    for message in messages:
        db.users.update_one({"_id": user_id}, outgoing(message), upsert=True)
    return [m["event_id"] for m in messages]


def pending(db, user_id):
    return [m["event_id"] for m in db.users.find_one({"_id": user_id}).get(PENDING, [])]


def test_handing_over_publishes_nothing_until_the_relay_runs(db):
    broker = Broker()
    outbox = outbox_on(db, broker)
    ids = store(db, "u1", 2)
    outbox.get_dependency(worker_ctx=None)("users", "u1")  # what a command does: no I/O
    assert broker.published == [] and pending(db, "u1") == ids
    outbox.relay_handed()
    assert broker.published == ids  # in the order they were stored
    assert pending(db, "u1") == []


def test_many_documents_go_out_in_batches_and_leave_the_outbox_empty(db):
    broker = Broker()
    outbox = outbox_on(db, broker)
    hand_over = outbox.get_dependency(worker_ctx=None)
    expected = []
    for n in range(Outbox.BATCH + 50):
        expected += store(db, f"u{n}", 1)
        hand_over("users", f"u{n}")
    outbox.relay_handed()
    assert sorted(broker.published) == sorted(expected)
    assert db.users.count_documents({f"{PENDING}.0": {"$exists": True}}) == 0


def test_a_refused_publish_leaves_it_and_what_follows_it_for_the_sweeper(db):
    first, second, third = store(db, "u1", 3)
    outbox = outbox_on(db, Broker(refuse={second}))
    outbox.get_dependency(worker_ctx=None)("users", "u1")
    outbox.relay_handed()  # does not raise: the command is done, the messages are stored
    assert pending(db, "u1") == [second, third]
    outbox.publisher = broker = Broker()
    outbox.grace_seconds = 0
    outbox.sweep()
    assert broker.published == [second, third] and pending(db, "u1") == []
