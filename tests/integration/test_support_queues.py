"""tests.support.queues.in_flight, which the e2e idle check trusts: a message counts
from the moment a consumer holds it until it is acknowledged, at once (the management
API's sampled counts missed it for up to 5 s), as does one waiting out a retry delay;
one parked in a queue nobody consumes does not."""
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

from tests.support.queues import in_flight

pytestmark = pytest.mark.integration


def test_a_message_counts_while_a_consumer_holds_it_and_not_once_acknowledged(rabbit_config):
    with Connection(rabbit_config["AMQP_URI"]) as connection:
        channel = connection.channel()
        queues = {name: Queue(name, Exchange(""), routing_key=name, channel=channel)
                  for name in ("work", "work.retry.2s", "parked")}
        producer = Producer(channel)
        for name, queue in queues.items():
            queue.declare()
            producer.publish({"for": name}, routing_key=name)
        assert in_flight(rabbit_config) == {"work.retry.2s": 1}  # "work" has no consumer yet

        held = []
        Consumer(channel, [queues["work"]],
                 callbacks=[lambda body, message: held.append(message)]).consume()
        connection.drain_events(timeout=5)
        assert len(held) == 1
        assert in_flight(rabbit_config) == {"work": 1, "work.retry.2s": 1}

        held[0].ack()
        assert in_flight(rabbit_config) == {"work.retry.2s": 1}
