"""The outbox publishes what a write stored; a failing consumer retries, then parks.

Real RabbitMQ (a fresh vhost per test) and a real SecantusDB server.
"""

from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from bus.messages import new_message, queue_name
from bus.mongo import Mongo
from bus.outbox import PENDING, Outbox, outgoing
from bus.reliable import parked_counts, replay_parked, subscribe
from tests.support.waiting import wait_for

received = []
failures_left = {"count": 0}


class Publisher:
    name = "users"
    db = Mongo()
    outbox = Outbox(["users"], sweep_every=0.1, grace_seconds=0.2)

    @rpc
    def delete(self, user_id, publish_now=True):
        message = new_message("users", "user_deleted", user_id, 1, user_id=user_id)
        self.db.users.update_one(
            {"_id": user_id}, {"$set": {"deleted": True}, **outgoing(message)}, upsert=True
        )
        if publish_now:
            self.outbox("users", user_id)


class Consumer:
    name = "notifications"

    @subscribe("users", "user_deleted")
    def on_user_deleted(self, message):
        if failures_left["count"] > 0:
            failures_left["count"] -= 1
            raise RuntimeError("projection failed")
        received.append(message)


def setup_function():
    received.clear()
    failures_left["count"] = 0


def test_a_write_is_published_once_and_leaves_the_outbox_empty(container_factory, service_config,
                                                                sweeps):
    publisher = container_factory(Publisher, service_config)
    publisher.start()
    container_factory(Consumer, service_config).start()

    with ServiceRpcProxy("users", service_config) as users:
        users.delete("u1")

    assert wait_for(lambda: len(received) == 1)
    assert received[0]["data"] == {"user_id": "u1"}
    assert received[0]["aggregate_id"] == "u1"
    stored = next(d for d in publisher.dependencies if isinstance(d, Mongo)).database.users
    assert wait_for(lambda: stored.find_one({"_id": "u1"})[PENDING] == [])
    sweeps.wait_for_a_whole_one()  # a sweep later (and its delivery), still exactly one
    assert not wait_for(lambda: len(received) > 1, timeout=0.2)


def test_what_was_handed_over_goes_out_when_the_service_stops(container_factory,
                                                              service_config):
    publisher = container_factory(Publisher, dict(service_config))
    publisher.start()
    container_factory(Consumer, service_config).start()
    with ServiceRpcProxy("users", service_config) as users:
        replies = [users.delete.call_async(f"s{n}") for n in range(50)]
        for reply in replies:
            reply.result()
    publisher.stop()  # SIGTERM: right after the last command answered
    assert wait_for(lambda: len(received) == 50)
    assert sorted(m["aggregate_id"] for m in received) == sorted(f"s{n}" for n in range(50))


def test_the_sweeper_publishes_what_a_crashed_writer_left(container_factory, service_config):
    container_factory(Publisher, service_config).start()
    container_factory(Consumer, service_config).start()

    with ServiceRpcProxy("users", service_config) as users:
        users.delete("u2", publish_now=False)  # as if the process died after the write

    assert wait_for(lambda: len(received) == 1)
    assert received[0]["data"] == {"user_id": "u2"}


def test_a_message_published_before_its_consumer_ran_is_kept(container_factory, service_config):
    container_factory(Publisher, service_config).start()
    with ServiceRpcProxy("users", service_config) as users:
        users.delete("u3")

    container_factory(Consumer, service_config).start()  # starts later
    assert wait_for(lambda: len(received) == 1)


def test_a_failing_handler_is_retried_with_backoff(container_factory, service_config):
    failures_left["count"] = 2  # under HANDLER_MAX_ATTEMPTS=3
    container_factory(Publisher, service_config).start()
    container_factory(Consumer, service_config).start()

    with ServiceRpcProxy("users", service_config) as users:
        users.delete("u4")

    assert wait_for(lambda: len(received) == 1)
    assert failures_left["count"] == 0


def test_a_handler_that_keeps_failing_is_parked_and_can_be_replayed(
    container_factory, service_config
):
    failures_left["count"] = 3  # == HANDLER_MAX_ATTEMPTS
    container_factory(Publisher, service_config).start()
    container_factory(Consumer, service_config).start()
    with ServiceRpcProxy("users", service_config) as users:
        users.delete("u5")

    parked = queue_name("users", "user_deleted", "notifications") + ".parked"
    amqp_uri = service_config["AMQP_URI"]
    assert wait_for(lambda: parked_counts(amqp_uri).get(parked) == 1)
    assert received == []

    moved = replay_parked(amqp_uri, queue_name("users", "user_deleted", "notifications"))
    assert moved == 1
    assert wait_for(lambda: len(received) == 1)
    assert received[0]["data"] == {"user_id": "u5"}
    assert parked_counts(amqp_uri).get(parked) == 0
