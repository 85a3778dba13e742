"""Reading what a service published, from a consumer's own queue on RabbitMQ."""
import time

from kombu import Connection, Queue


def take(config, queue, count=1, timeout=10):
    """The payloads of the next ``count`` messages of ``queue`` (fewer if ``timeout``
    seconds pass first), acknowledged as they are read."""
    payloads = []
    with Connection(config["AMQP_URI"]) as connection:
        channel_queue = Queue(queue)(connection.channel())
        deadline = time.monotonic() + timeout
        while len(payloads) < count and time.monotonic() < deadline:
            message = channel_queue.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
            else:
                payloads.append(message.payload)
    return payloads
