"""Reading what a service published, from a consumer's own queue on RabbitMQ, and
waiting until services have handled everything they were sent."""
import time
from urllib.parse import quote, urlsplit

import requests
from amqp.exceptions import ChannelError
from kombu import Connection, Queue
from nameko.timer import Timer

MANAGEMENT_PORT = 15672


def take(config, queue, count=1, timeout=10):
    """The payloads of the next ``count`` messages of ``queue`` (fewer if ``timeout``
    seconds pass first; ``timeout=0``: what is there now), acknowledged as they are read."""
    payloads = []
    with Connection(config["AMQP_URI"]) as connection:
        channel_queue = Queue(queue)(connection.channel())
        deadline = time.monotonic() + timeout
        while len(payloads) < count:
            message = channel_queue.get(no_ack=True)
            if message is not None:
                payloads.append(message.payload)
            elif time.monotonic() >= deadline:
                break
            else:
                time.sleep(0.05)
    return payloads


def _queues(config, columns):
    """The vhost of ``config``'s AMQP_URI's queues, with ``columns``, from RabbitMQ's
    management API."""
    parts = urlsplit(config["AMQP_URI"])
    vhost = parts.path.lstrip("/") or "/"
    response = requests.get(f"http://{parts.hostname}:{MANAGEMENT_PORT}/api/queues/"
                            f"{quote(vhost, safe='')}?columns={','.join(columns)}",
                            auth=(parts.username or "guest", parts.password or "guest"),
                            timeout=10)
    response.raise_for_status()
    return response.json()


def queue_names(config):
    """Every queue of the vhost (the names are current, unlike the management API's
    message counts, which lag by seconds)."""
    return [queue["name"] for queue in _queues(config, ["name"])]


def unacknowledged(config):
    """{queue: messages delivered to a consumer and not yet acknowledged} of the vhost
    (the management API's counts: they lag by up to its statistics interval, 5 s)."""
    return {queue["name"]: queue.get("messages_unacknowledged") or 0
            for queue in _queues(config, ["name", "messages_unacknowledged"])}


def wait_until_idle(config, containers, timeout=15, quiet_polls=3, interval=0.1):
    """Wait until the services in ``containers`` have nothing left to do: no message
    ready in a queue of their vhost that has a consumer, nor in a retry delay (counted
    over AMQP, which is current), and no worker running but timers', for ``quiet_polls``
    polls in a row. What they would still send because of what they got is then sent:
    a test that expects no more mail or messages can check now instead of sleeping."""
    names = queue_names(config)
    deadline = time.monotonic() + timeout
    quiet = 0
    with Connection(config["AMQP_URI"]) as connection:
        channel = connection.channel()

        def pending(name):
            """Messages someone will still handle: in a queue with a consumer, or
            waiting out a retry delay (bus.reliable's ``<queue>.retry.<n>s``)."""
            nonlocal channel
            try:
                declared = channel.queue_declare(name, passive=True)
            except ChannelError:  # gone, or another connection's exclusive queue
                names.remove(name)
                channel = connection.channel()
                return 0
            handled = declared.consumer_count or ".retry." in name
            return declared.message_count if handled else 0

        while quiet < quiet_polls:
            busy = [name for name in list(names) if pending(name)]
            busy += [container.service_name for container in containers
                     for context in list(container._worker_threads)
                     if not isinstance(context.entrypoint, Timer)]
            quiet = 0 if busy else quiet + 1
            if busy and time.monotonic() > deadline:
                raise AssertionError(f"still busy after {timeout}s: {busy}")
            time.sleep(interval)
