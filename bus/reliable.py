"""Event handlers that retry with backoff and park what keeps failing.

Nameko acks and drops a message whose handler raised. ``subscribe`` replaces
``event_handler`` for every consumer in EventPost: a failed message is sent to a
delay queue (per-queue TTL, dead-lettered back to the handler's queue), with
``attempts`` counted in a header; after ``HANDLER_MAX_ATTEMPTS`` it goes to
``<queue>.parked``, where an operator sees it (``invoke parked``) and replays it
(``invoke replay-parked``). Queue names come from bus.messages, so the queues
publishers declare at start-up are the ones consumed here.
"""
import logging
import traceback

from kombu import Exchange, Queue
from kombu.common import maybe_declare
from kombu.exceptions import OperationalError as KombuOperationalError
from nameko.amqp.publish import Publisher, get_connection
from nameko.constants import NON_PERSISTENT
from nameko.events import EventHandler
from nameko.messaging import QueueConsumer
from nameko.rpc import Responder
from nameko.standalone.events import get_event_exchange

from bus.messages import SUBSCRIPTIONS, queue_name

log = logging.getLogger(__name__)


def _tolerant(settle):
    """nameko 2.14's QueueConsumer ignores amqp's ConnectionError when it acks or
    requeues, but not the socket errors (BrokenPipeError, ConnectionResetError) an
    ack on a connection the broker just dropped raises: the worker's thread dies with
    it and takes the whole container down (a broker restart or ``stop_app`` killed
    the service). The broker has taken the message back already, so there is nothing
    to do but go on; the consumer reconnects by itself."""
    def wrapper(self, message):
        try:
            settle(self, message)
        except OSError as error:
            log.warning("could not settle a message on a broken connection (%s); "
                        "the broker redelivers it", error)
    wrapper.__wrapped__ = settle
    return wrapper


for _name in ("ack_message", "requeue_message"):
    _method = getattr(QueueConsumer, _name)
    if not hasattr(_method, "__wrapped__"):
        setattr(QueueConsumer, _name, _tolerant(_method))

def _reply_tolerant(send_response):
    """nameko 2.14 lets an RPC reply that cannot be published (the broker dropped the
    connection a moment ago: kombu's OperationalError, a socket error) through to the
    container, which then dies: a broker restart took the service down with it. The
    caller gets no answer either way and its own timeout covers that (the gateway
    answers 503, a standalone proxy times out), so the reply is dropped and logged."""
    def wrapper(self, result, exc_info):
        try:
            return send_response(self, result, exc_info)
        except (KombuOperationalError, OSError) as error:
            log.warning("could not send an RPC reply on a broken connection (%s); the "
                        "caller's timeout covers it", error)
            return result, exc_info
    wrapper.__wrapped__ = send_response
    return wrapper


if not hasattr(Responder.send_response, "__wrapped__"):
    Responder.send_response = _reply_tolerant(Responder.send_response)


class ReplyPublisher(Publisher):
    """RPC replies go without a broker confirm and are not persisted (nameko waits
    for a confirm on each by default: a broker round trip per call). A reply goes to
    the caller's own non-durable queue, so a broker crash loses it whatever its
    delivery mode, and the caller's timeout covers that either way (the gateway
    answers 503; a command's event is in the outbox, confirmed, and an
    Idempotency-Key makes the retry safe).

    Replies have a connection pool of their own (kombu pools by connection options,
    so a connection name is enough). Nameko writes ``confirm_publish`` into the
    options dict on every publish, and ``Publisher``'s is shared with every confirmed
    publisher of the process (the outbox's); this one only replies share. And a
    channel shared with RPC requests (mandatory) would lose a reply: a publish first
    reads what the broker sent on its channel, and a request's return there raises
    before the reply goes out."""

    use_confirms = False
    delivery_mode = NON_PERSISTENT
    transport_options = {**Publisher.transport_options,
                         "client_properties": {"connection_name": "rpc replies"}}


Responder.publisher_cls = ReplyPublisher

ATTEMPTS_HEADER = "x-eventpost-attempts"
ERROR_HEADER = "x-eventpost-error"
DEFAULT_EXCHANGE = Exchange("")


def parked_queue(name):
    return Queue(f"{name}.parked", durable=True)


def delay_queue(name, seconds):
    return Queue(
        f"{name}.retry.{seconds:g}s", durable=True,
        queue_arguments={
            "x-message-ttl": int(seconds * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": name,
        },
    )


def backoff(attempt, base_seconds):
    """Seconds before retry number ``attempt`` (1, 2, ...): base, 2*base, 4*base..."""
    return base_seconds * 2 ** (attempt - 1)


class ReliableEventHandler(EventHandler):
    def setup(self):
        service = self.container.service_name
        if service not in SUBSCRIPTIONS.get((self.source_service, self.event_type), []):
            raise RuntimeError(
                f"{service} handles {self.source_service}.{self.event_type}, "
                "which bus.messages.SUBSCRIPTIONS does not list"
            )
        config = self.container.config
        self.max_attempts = int(config.get("HANDLER_MAX_ATTEMPTS", 5))
        self.base_seconds = float(config.get("HANDLER_RETRY_BASE_SECONDS", 1))
        name = queue_name(self.source_service, self.event_type, service)
        self.queue = Queue(
            name, exchange=get_event_exchange(self.source_service, config),
            routing_key=self.event_type, durable=True,
        )
        self.parked = parked_queue(name)
        self.delays = [
            delay_queue(name, backoff(attempt, self.base_seconds))
            for attempt in range(1, self.max_attempts)
        ]
        with get_connection(config["AMQP_URI"]) as connection:
            for queue in [self.queue, self.parked, *self.delays]:
                maybe_declare(queue, connection.channel())
        self.retry_publisher = Publisher(config["AMQP_URI"], serializer=self.container.serializer)
        # Consumer.setup, skipping EventHandler.setup which would name the queue itself
        self.queue_consumer.register_provider(self)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is not None:
            try:
                self._retry_or_park(message, exc_info)
            except Exception:  # could not re-route: let the broker redeliver instead
                log.exception("could not schedule a retry; requeueing")
                self.queue_consumer.requeue_message(message)
                return
        self.queue_consumer.ack_message(message)

    def _retry_or_park(self, message, exc_info):
        headers = dict(message.headers or {})
        attempts = int(headers.get(ATTEMPTS_HEADER, 0)) + 1
        headers[ATTEMPTS_HEADER] = attempts
        headers[ERROR_HEADER] = "".join(traceback.format_exception_only(*exc_info[:2]))[-1000:]
        if attempts < self.max_attempts:
            target = self.delays[attempts - 1]
            log.warning("%s failed (attempt %d), retrying via %s", self.queue.name,
                        attempts, target.name)
        else:
            target = self.parked
            log.error("%s failed %d times, parked in %s", self.queue.name, attempts, target.name)
        self.retry_publisher.publish(
            message.payload, exchange=DEFAULT_EXCHANGE, routing_key=target.name,
            headers=headers,
        )


subscribe = ReliableEventHandler.decorator


def parked_counts(amqp_uri):
    """{parked queue name: message count} for every subscription."""
    counts = {}
    with get_connection(amqp_uri) as connection:
        channel = connection.channel()
        for (source, event_type), consumers in SUBSCRIPTIONS.items():
            for consumer in consumers:
                queue = parked_queue(queue_name(source, event_type, consumer))
                try:
                    _, count, _ = queue(channel).queue_declare(passive=True)
                except Exception:  # never declared: that consumer has not run yet
                    channel = connection.channel()
                    continue
                counts[queue.name] = count
    return counts


def replay_parked(amqp_uri, name):
    """Move every message of ``<name>.parked`` back to the handler queue ``name``."""
    moved = 0
    with get_connection(amqp_uri) as connection:
        queue = parked_queue(name)(connection.channel())
        producer = connection.Producer()
        while True:
            message = queue.get(no_ack=False)
            if message is None:
                return moved
            headers = dict(message.headers or {})
            headers[ATTEMPTS_HEADER] = 0
            producer.publish(message.body, exchange="", routing_key=name, headers=headers,
                             content_type=message.content_type,
                             content_encoding=message.content_encoding,
                             delivery_mode=2)
            message.ack()
            moved += 1
