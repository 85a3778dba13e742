"""The outbox: an event is stored with the change that caused it, then published.

A handler writes the changed document and its outgoing message in one atomic
update (``{"$push": {"pending_events": message}}`` beside the ``$set``), so a
crash can never keep one without the other. The ``Outbox`` dependency then
publishes the document's pending messages, outside the command's reply path and in
batches (``BatchPublisher``: a batch's confirms are awaited together), and pulls them
off once RabbitMQ has confirmed them. A sweeper in every
service instance republishes messages left behind by a crash. Delivery is
at-least-once; consumers are idempotent (``version`` and ``event_id`` in bus.messages).
"""
import logging
import time
from datetime import timedelta

import eventlet
import eventlet.event
from kombu import Connection, Producer, Queue
from kombu.common import maybe_declare
from nameko.amqp.publish import get_connection
from nameko.events import EventDispatcher
from nameko.standalone.events import get_event_exchange
from pymongo import ASCENDING, UpdateOne

from bus.messages import SUBSCRIPTIONS, iso, queue_name, utc_now
from bus.mongo import Mongo

log = logging.getLogger(__name__)

PENDING = "pending_events"
RELAY_CONNECTION_NAME = "eventpost outbox relay"  # as RabbitMQ's management UI shows it


def outgoing(*messages):
    """The update fragment that stores ``messages`` in the outbox of the document, in
    that order (the relay publishes them so)."""
    if len(messages) == 1:
        return {"$push": {PENDING: messages[0]}}
    return {"$push": {PENDING: {"$each": list(messages)}}}


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


class PublishRefused(Exception):
    """The broker refused (or did not confirm in time) some messages of a batch; they
    stay in their documents for the sweeper."""


class BatchPublisher:
    """Publishes many messages on one channel in confirm mode, then waits for all their
    confirms at once: one broker round trip a batch, where nameko's publisher waits
    for each message's confirm before it sends the next (measured under the seed mix:
    6 ms p50, 18 ms p90 a confirm, so a batch of a few took tens of ms).

    The connection is the relay's own (one greenthread uses it) and is made again
    after any failure. Messages are what nameko's EventDispatcher sends: the same
    exchange, routing key, headers, serializer and delivery mode."""

    CONFIRM_SECONDS = 10.0

    def __init__(self, amqp_uri, ssl, exchange, serializer, delivery_mode):
        self.amqp_uri, self.ssl, self.exchange = amqp_uri, ssl, exchange
        self.serializer, self.delivery_mode = serializer, delivery_mode
        self._connection = None

    def publish_all(self, messages):
        """``messages``: [(payload, routing key, headers)]. Returns, per message, True
        if the broker confirmed it; raises only if the connection failed."""
        try:
            return self._publish_all(messages)
        except Exception:
            self.close()  # what state the channel is in is unknown: start afresh
            raise

    def _publish_all(self, messages):
        producer = self._producer()
        first = self._sent + 1
        # waited for before it is sent: a publish may read the confirms of earlier ones
        waiting, self._refused = self._waiting, set()
        for payload, routing_key, headers in messages:
            self._sent += 1
            waiting.add(self._sent)
            producer.publish(payload, routing_key=routing_key, headers=headers,
                             delivery_mode=self.delivery_mode, retry=False)
        deadline = time.monotonic() + self.CONFIRM_SECONDS
        while waiting and time.monotonic() < deadline:
            try:
                self._connection.drain_events(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
        if waiting:  # not confirmed in time: treat as refused, on a fresh channel next
            self.close()
        return [tag not in waiting and tag not in self._refused
                for tag in range(first, first + len(messages))]

    def _producer(self):
        if self._connection is None:
            connection = Connection(self.amqp_uri, ssl=self.ssl, transport_options={
                "client_properties": {"connection_name": RELAY_CONNECTION_NAME}})
            channel = connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._connection, self._sent = connection, 0
            self._waiting, self._refused = set(), set()
            # declares the exchange once per connection, as nameko's publisher did on
            # every publish: a service nobody consumes from has no queue that declared it
            self._channel_producer = Producer(channel, exchange=self.exchange,
                                              serializer=self.serializer, auto_declare=True)
        return self._channel_producer

    def _settle(self, delivery_tag, multiple):
        settled = ({t for t in self._waiting if t <= delivery_tag} if multiple
                   else {delivery_tag} & self._waiting)
        self._waiting -= settled
        return settled

    def _on_ack(self, delivery_tag, multiple):
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag, multiple):
        self._refused |= self._settle(delivery_tag, multiple)

    def close(self):
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.release()
            except Exception:  # gone already
                pass


class Outbox(EventDispatcher):
    """Publishes the messages stored in ``pending_events`` of the given collections.

    In a service: ``outbox = Outbox(["users"])``; after a handler's write,
    ``self.outbox("users", user_id)`` hands that document to the relay and returns at
    once: the command answers without waiting for the broker. The relay (one
    greenthread per process) publishes what it was handed in batches: one read of up
    to ``BATCH`` documents, their messages each confirmed by the broker, and one write
    that pulls what went out, made up to ``PULL_DELAY`` later so that the messages of
    the commands meanwhile are pulled in the same write (a message out but not pulled
    yet is not published again; only a crash in between leaves it to the sweeper,
    which publishes it a second time: consumers are idempotent). The sweeper, in the
    same greenthread, picks up what a crashed or slow writer left behind. On stop,
    what was handed over is published and pulled first.
    """

    BATCH = 200
    PULL_DELAY = 0.1  # seconds; far below the sweeper's grace, which must not see them

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
        self._handed = {collection: {} for collection in self.collections}  # id -> headers
        # id -> event ids published, not pulled yet; and when they are to be pulled
        self._published = {collection: {} for collection in self.collections}
        self._pull_at = None
        self._wake = eventlet.event.Event()
        self._batches = BatchPublisher(self.amqp_uri, ssl, self.exchange,
                                       self.publisher.serializer, self.publisher.delivery_mode)

    def start(self):
        self.mongo = next(d for d in self.container.dependencies if isinstance(d, Mongo))
        for collection in self.collections:
            # the sweeper's query, once a second: only documents with messages are indexed
            self.mongo.database[collection].create_index(
                [(f"{PENDING}.0.occurred_at", ASCENDING)], sparse=True
            )
        self._relay_thread = self.container.spawn_managed_thread(self._relay_forever)

    def stop(self):
        thread = getattr(self, "_relay_thread", None)
        if thread is not None:
            thread.kill()
            self._relay_thread = None
            try:
                self.relay_handed()  # what the last commands stored goes out before we do
                self.pull_published()
            except Exception:  # the sweeper of this or another instance will
                log.exception("outbox: publishing on stop failed; left to the sweeper")
        self._batches.close()

    def kill(self):
        thread = getattr(self, "_relay_thread", None)
        if thread is not None:
            thread.kill()
        self._batches.close()

    def get_dependency(self, worker_ctx):
        headers = self.get_message_headers(worker_ctx)

        def hand_over(collection, document_id):
            self._handed[collection][document_id] = headers
            if not self._wake.ready():
                self._wake.send()

        return hand_over

    def relay_handed(self):
        """Publish the messages of the documents handed over so far."""
        for collection, handed in self._handed.items():
            while handed:
                batch = dict(list(handed.items())[:self.BATCH])
                for document_id in batch:
                    del handed[document_id]
                try:
                    self.relay(collection, {"_id": {"$in": list(batch)}}, batch,
                               pull_now=False)
                except Exception:
                    # The change is stored with its messages and the sweeper publishes
                    # them later: the command that stored them is done either way.
                    log.exception("publishing %d %s left to the sweeper", len(batch), collection)

    def relay(self, collection, query, headers=None, pull_now=True):
        """Publish the pending messages of the documents matching ``query``, each
        document's in order (but those out already, waiting to be pulled), then pull
        what went out: now, in one write, or (``pull_now=False``) with the next
        ``pull_published``, within ``PULL_DELAY``. ``headers``: {document id: AMQP
        headers} (the call that stored them, for tracing)."""
        documents = list(self.mongo.database[collection].find(
            {**query, f"{PENDING}.0": {"$exists": True}}, {PENDING: 1}).limit(self.BATCH))
        published = self._published[collection]
        try:
            self._publish_in_order(documents, published, headers or {})
        finally:  # pull what went out, even if a later publish failed
            if pull_now or len(published) >= self.BATCH:
                self.pull_published(collection)
            elif self._pull_at is None:
                self._pull_at = time.monotonic() + self.PULL_DELAY
        return len(documents)

    def _publish_in_order(self, documents, published, headers):
        """Publish each document's messages not out yet, in the order stored. A round
        sends the next message of every document at once and awaits their confirms
        together; a document whose message was refused sends nothing more this time
        (the sweeper tries again), so no message overtakes an earlier one of its
        document. Records in ``published`` what the broker confirmed."""
        waiting = {document["_id"]: [m for m in document[PENDING]
                                     if m["event_id"] not in published.get(document["_id"], ())]
                   for document in documents}
        refused = 0
        while True:
            round_ = [(document_id, messages.pop(0))
                      for document_id, messages in waiting.items() if messages]
            if not round_:
                break
            confirmed = self._batches.publish_all(
                [(message, message["event_type"], headers.get(document_id, {}))
                 for document_id, message in round_])
            for (document_id, message), ok in zip(round_, confirmed, strict=True):
                if ok:
                    published.setdefault(document_id, []).append(message["event_id"])
                else:
                    refused += 1 + len(waiting[document_id])
                    waiting[document_id] = []
        if refused:
            raise PublishRefused(f"{refused} messages refused or not confirmed; "
                                 "left to the sweeper")

    def pull_published(self, *collections):
        """Pull from their documents the messages published so far (of every
        collection, or of those named), one write per collection. If the write fails,
        the sweeper publishes them again later."""
        for collection in collections or self.collections:
            published = {document_id: sent for document_id, sent
                         in self._published[collection].items() if sent}
            self._published[collection] = {}
            if published:
                self.mongo.database[collection].bulk_write(
                    [UpdateOne({"_id": document_id},
                               {"$pull": {PENDING: {"event_id": {"$in": sent}}}})
                     for document_id, sent in published.items()], ordered=False)
        if not any(self._published.values()):
            self._pull_at = None

    def sweep(self):
        """Publish what a crashed or slow writer left behind."""
        cutoff = iso(utc_now() - timedelta(seconds=self.grace_seconds))
        for collection in self.collections:
            while self.relay(collection, {f"{PENDING}.0.occurred_at": {"$lt": cutoff}}) \
                    == self.BATCH:
                pass

    def _relay_forever(self):
        next_sweep = 0.0
        while True:
            try:
                self.relay_handed()
                if self._pull_at is not None and time.monotonic() >= self._pull_at:
                    self.pull_published()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_every
                    self.sweep()
            except Exception:  # keep relaying: a broker or database blip must not end it
                log.exception("outbox relay failed")
            if not any(self._handed.values()):
                wake_at = min(next_sweep, self._pull_at or next_sweep)
                self._wake = eventlet.event.Event()
                with eventlet.Timeout(max(0.0, wake_at - time.monotonic()), False):
                    self._wake.wait()
