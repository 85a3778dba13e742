"""What keeps the gateway's in-memory read models (read_models.py) current.

``ReadModels`` is a dependency: routes read ``self.read_models.events`` and
``self.read_models.accounts``, and apply their own commands' replies to them.
Behind it, one greenthread per process consumes every `events.*` and `users.*`
message (bus.messages.BROADCASTS) from an exclusive queue of its own, and applies
each one in place: no worker per message, no database.

Subscribe, then snapshot: the queue is bound before the first snapshot is read over
RPC (events.all_events, users.all_accounts), so nothing published meanwhile is
missed, and version checks let both arrive in any order. The same catch-up runs
after every reconnect to the broker (the queue died with the connection, and with
it whatever was published meanwhile) and after a version gap (a message newer than
the next one expected: others were missed too). A catch-up also drops what was
deleted while nobody listened.
"""
import logging
import socket
import uuid
from datetime import datetime, timezone

import eventlet
from kombu import Connection, Queue, binding
from nameko.extensions import DependencyProvider
from nameko.standalone.events import get_event_exchange
from nameko.standalone.rpc import ClusterRpcProxy

from bus import heap
from bus.config import setting
from bus.messages import BROADCASTS
from services.gateway.read_models import AccountsView, EventsView

log = logging.getLogger(__name__)

SNAPSHOT_PAGE = 1000
CONNECTION_NAME = "eventpost gateway read models"  # as RabbitMQ's management UI shows it
HEARTBEAT_SECONDS = 20
RECONNECT_SECONDS = (0.2, 0.5, 1, 2, 5)  # waits between attempts, then the last one again
# Gaps from messages that merely overtook each other need no catch-up each; one in a
# while catches up all of them.
GAP_CATCH_UP_SECONDS = 5.0
FORGET_EVERY_SECONDS = 60.0


class ReadModels(DependencyProvider):
    def setup(self):
        config = self.container.config
        self.events = EventsView(
            max_events=int(setting(config, "GATEWAY_MAX_EVENTS", 100_000)),
            past_hours=float(setting(config, "GATEWAY_EVENTS_PAST_HOURS", 24)),
        )
        self.accounts = AccountsView(
            max_accounts=int(setting(config, "GATEWAY_MAX_ACCOUNTS", 200_000)))
        self.amqp_uri = config["AMQP_URI"]
        self.queue = Queue(
            f"gateway-read-models-{uuid.uuid4().hex}", exclusive=True, auto_delete=True,
            durable=False,
            bindings=[binding(get_event_exchange(source, config), routing_key=event_type)
                      for source, event_type in BROADCASTS["gateway"]],
        )
        self._catching_up = None
        self._again = False
        self._last_gap_catch_up = 0.0
        self._threads = []

    def start(self):
        for loop in (self._consume_forever, self._forget_forever):
            self._threads.append(self.container.spawn_managed_thread(loop))

    def stop(self):
        for thread in self._threads + [self._catching_up]:
            if thread is not None:
                thread.kill()
        self._threads = []

    kill = stop

    def get_dependency(self, worker_ctx):
        return self

    # --- messages -------------------------------------------------------------------

    def _consume_forever(self):
        attempt = 0
        while True:
            try:
                with Connection(self.amqp_uri, heartbeat=HEARTBEAT_SECONDS,
                                transport_options={"client_properties": {
                                    "connection_name": CONNECTION_NAME}}) as connection:
                    with connection.Consumer(self.queue, callbacks=[self._on_message],
                                             accept=["json"], no_ack=True):
                        attempt = 0
                        self.catch_up("subscribed")
                        self._drain(connection)
            except Exception as error:  # the broker went away (in one of many forms): again
                wait = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
                attempt += 1
                log.warning("read models lost the broker (%s); reconnecting in %gs", error, wait)
                eventlet.sleep(wait)

    @staticmethod
    def _drain(connection):
        while True:
            try:
                connection.drain_events(timeout=HEARTBEAT_SECONDS / 4)
            except socket.timeout:
                connection.heartbeat_check()

    def _on_message(self, body, message):
        try:
            self.apply(body)
        except Exception:  # one bad message must not stop the feed; a catch-up repairs
            log.exception("read models could not apply %s", body.get("event_type"))
            self._catch_up_after_gap()

    def apply(self, message):
        """One `events.*` or `users.*` envelope (bus.messages)."""
        kind, data = message["event_type"], message["data"]
        if kind == "event_deleted":
            self.events.remove(message["aggregate_id"])
        elif kind == "user_deleted":
            self.accounts.remove(message["aggregate_id"])
        elif "event" in data:
            known = self.events.apply(data["event"])
            if known is not None and message["version"] > known + 1:
                self._catch_up_after_gap()
        elif "user" in data:
            known = self.accounts.apply(data["user"])
            if known is not None and message["version"] > known + 1:
                self._catch_up_after_gap()

    # --- catch-ups ------------------------------------------------------------------

    def _catch_up_after_gap(self):
        now = eventlet.hubs.get_hub().clock()
        if now - self._last_gap_catch_up >= GAP_CATCH_UP_SECONDS:
            self._last_gap_catch_up = now
            self.catch_up("version gap")

    def catch_up(self, reason):
        """Read both models' snapshots in the background (one catch-up at a time; one
        asked for while another runs follows it)."""
        if self._catching_up is not None:
            self._again = True
            return
        log.info("read models: catching up (%s)", reason)
        self._catching_up = self.container.spawn_managed_thread(self._catch_up_until_done)

    def _catch_up_until_done(self):
        attempt = 0
        try:
            while True:
                self._again = False
                try:
                    self._snapshot()
                except Exception as error:  # services not up yet, or a timeout: try again
                    wait = RECONNECT_SECONDS[min(attempt, len(RECONNECT_SECONDS) - 1)]
                    attempt += 1
                    log.warning("read models: catch-up failed (%r); again in %gs", error, wait)
                    eventlet.sleep(wait)
                    self._again = True
                if not self._again:
                    return
        finally:
            self._catching_up = None

    def _snapshot(self):
        config = {**self.container.config, "AMQP_URI": self.amqp_uri}
        with ClusterRpcProxy(config, timeout=30) as rpc:
            for view, read in ((self.events, rpc.events.all_events),
                               (self.accounts, rpc.users.all_accounts)):
                epoch = view.begin_snapshot()
                after, count = None, 0
                while True:
                    page = read(after_id=after, limit=SNAPSHOT_PAGE)
                    for item in page:
                        view.apply(item)
                    count += len(page)
                    if len(page) < SNAPSHOT_PAGE:
                        break
                    after = page[-1]["id"]
                view.end_snapshot(epoch)
                log.info("read models: %s caught up, %d read, %d held",
                         type(view).__name__, count, len(view))
        heap.settle()  # what the snapshot holds lives until it changes (bus/heap.py)

    def _forget_forever(self):
        while True:
            eventlet.sleep(FORGET_EVERY_SECONDS)
            self.events.forget_before(datetime.now(timezone.utc) - self.events.past)

