"""The outbox: an event is stored with the change that caused it, then published.

A handler writes the changed document and its outgoing message in one atomic
update (``{"$push": {"pending_events": message}}`` beside the ``$set``), so a
crash can never keep one without the other. The ``Outbox`` dependency then
publishes the document's pending messages and pulls each one off once RabbitMQ
has confirmed it. A sweeper in every service instance republishes messages left
behind by a crash. Delivery is at-least-once; consumers are idempotent
(``version`` and ``event_id`` in bus.messages).
"""
import logging
from datetime import timedelta

import eventlet
from kombu import Queue
from kombu.common import maybe_declare
from nameko.amqp.publish import get_connection
from nameko.events import EventDispatcher
from nameko.standalone.events import get_event_exchange
from pymongo import ASCENDING

from bus.messages import SUBSCRIPTIONS, iso, queue_name, utc_now
from bus.mongo import Mongo

log = logging.getLogger(__name__)

PENDING = "pending_events"


def outgoing(message):
    """The update fragment that stores ``message`` in the outbox of the document."""
    return {"$push": {PENDING: message}}


def consumer_queues(source_service, config):
    """The durable queues of every consumer of ``source_service`` (bus.messages)."""
    exchange = get_event_exchange(source_service, config)
    return [
        Queue(queue_name(source, event_type, consumer), exchange=exchange,
              routing_key=event_type, durable=True)
        for (source, event_type), consumers in SUBSCRIPTIONS.items()
        if source == source_service
        for consumer in consumers
    ]


class Outbox(EventDispatcher):
    """Publishes the messages stored in ``pending_events`` of the given collections.

    In a service: ``outbox = Outbox(["users"])``; after a handler's write,
    ``self.outbox("users", user_id)`` publishes that document's messages now.
    """

    def __init__(self, collections, sweep_every=1.0, grace_seconds=2.0, **kwargs):
        self.collections = list(collections)
        self.sweep_every = sweep_every
        self.grace_seconds = grace_seconds
        super().__init__(**kwargs)

    def setup(self):
        super().setup()
        ssl = self.container.config.get("AMQP_SSL")
        with get_connection(self.amqp_uri, ssl) as connection:
            for queue in consumer_queues(self.container.service_name, self.container.config):
                maybe_declare(queue, connection.channel())

    def start(self):
        self.mongo = next(d for d in self.container.dependencies if isinstance(d, Mongo))
        for collection in self.collections:
            # the sweeper's query, once a second: only documents with messages are indexed
            self.mongo.database[collection].create_index(
                [(f"{PENDING}.0.occurred_at", ASCENDING)], sparse=True
            )
        self._sweeper = self.container.spawn_managed_thread(self._sweep_forever)

    def stop(self):
        sweeper = getattr(self, "_sweeper", None)
        if sweeper is not None:
            sweeper.kill()

    kill = stop

    def get_dependency(self, worker_ctx):
        headers = self.get_message_headers(worker_ctx)

        def relay(collection, document_id):
            try:
                self.relay(collection, {"_id": document_id}, headers)
            except Exception:
                # The change is stored with its messages and the sweeper publishes them
                # later: the caller must not see a failure and retry a command that is done.
                log.exception("publishing for %s %s failed; left to the sweeper",
                              collection, document_id)

        return relay

    def relay(self, collection, query, headers=None):
        """Publish the pending messages of the documents matching ``query``, in order."""
        db = self.mongo.database
        for document in db[collection].find(query, {PENDING: 1}):
            for message in document.get(PENDING) or []:
                self.publisher.publish(
                    message, exchange=self.exchange, routing_key=message["event_type"],
                    extra_headers=headers or {},
                )
                db[collection].update_one(
                    {"_id": document["_id"]},
                    {"$pull": {PENDING: {"event_id": message["event_id"]}}},
                )

    def sweep(self):
        """Publish what a crashed or slow writer left behind."""
        cutoff = iso(utc_now() - timedelta(seconds=self.grace_seconds))
        for collection in self.collections:
            self.relay(collection, {f"{PENDING}.0.occurred_at": {"$lt": cutoff}})

    def _sweep_forever(self):
        while True:
            try:
                self.sweep()
            except Exception:  # keep sweeping: a broker or database blip must not end it
                log.exception("outbox sweep failed")
            eventlet.sleep(self.sweep_every)
