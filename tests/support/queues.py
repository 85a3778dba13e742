"""Reading what a service published, from a consumer's own queue on RabbitMQ, and
waiting until services have handled everything they were sent."""
import shutil
import subprocess
import time
from urllib.parse import quote, unquote, urlsplit

import requests
from amqp.exceptions import ChannelError
from kombu import Connection, Queue
from nameko.timer import Timer

MANAGEMENT_PORT = 15672
# Debian puts the RabbitMQ tools in /usr/sbin, which a non-root PATH may lack
RABBITMQCTL = shutil.which("rabbitmqctl") or shutil.which("rabbitmqctl",
                                                          path="/usr/sbin:/sbin") or "rabbitmqctl"


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


def handled(name, consumers):
    """Whether the messages of queue ``name`` will still be handled: it has a consumer,
    or it is a retry delay (bus.reliable's ``<queue>.retry.<n>s``), whose messages go
    back to their queue. Messages parked for an operator are not."""
    return bool(consumers) or ".retry." in name


def in_flight(config):
    """{queue: messages being handled or still to be} of the vhost of ``config``'s
    AMQP_URI (those not acknowledged, and those ready in a ``handled`` queue), counted
    exactly: ``rabbitmqctl list_queues`` asks each queue process at the call, where the
    management API's counts are samples up to its statistics interval (5 s) old, which
    missed a handler started within it. About 0.5 s a call (rabbitmqctl starts an
    Erlang VM), so it confirms idleness rather than polls; the node is the local
    broker's, as the management API's is, and reading it needs root (the Erlang cookie)."""
    vhost = unquote(urlsplit(config["AMQP_URI"]).path.lstrip("/")) or "/"
    listed = subprocess.run(
        [RABBITMQCTL, "list_queues", "--quiet", "--no-table-headers", "--vhost", vhost,
         "name", "messages_ready", "messages_unacknowledged", "consumers"],
        capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, f"rabbitmqctl list_queues: {listed.stderr or listed.stdout}"
    counts = {}
    for line in listed.stdout.splitlines():
        name, ready, unacknowledged, consumers = line.rsplit("\t", 3)
        count = int(unacknowledged) + (int(ready) if handled(name, int(consumers)) else 0)
        if count:
            counts[name] = count
    return counts


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
            return declared.message_count if handled(name, declared.consumer_count) else 0

        while quiet < quiet_polls:
            busy = [name for name in list(names) if pending(name)]
            busy += [container.service_name for container in containers
                     for context in list(container._worker_threads)
                     if not isinstance(context.entrypoint, Timer)]
            quiet = 0 if busy else quiet + 1
            if busy and time.monotonic() > deadline:
                raise AssertionError(f"still busy after {timeout}s: {busy}")
            time.sleep(interval)
