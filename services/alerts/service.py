"""The alerts service: saved searches, matched against the event stream, and their
alert emails (sent by the mailer).

Thin entrypoints: each one calls a plain function of handlers.py.
"""
from nameko.dependency_providers import Config
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from bus.config import setting
from bus.consul import ConsulRegistration
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.messages import utc_now
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from bus.reliable import subscribe

from . import handlers, storage
from .matching import SavedSearchIndex


class Index(DependencyProvider):
    """This process's saved searches in memory (matching.py), shared by its workers."""

    def setup(self):
        self.index = SavedSearchIndex()

    def get_dependency(self, worker_ctx):
        return self.index


class AlertsService:
    name = "alerts"

    db = Mongo(prepare=storage.ensure_indexes)
    health = database_health
    outbox = Outbox([storage.MAILS])
    index = Index()
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()
    config = Config()

    # RPC (the gateway)

    @rpc
    def create(self, user, fields, command_id=None):
        return handlers.create(self.db, user, fields, utc_now(), command_id)

    @rpc
    def list(self, user_id, filters):
        return handlers.list_saved_searches(self.db, user_id, filters)

    @rpc
    def get(self, user_id, saved_search_id):
        return handlers.get(self.db, user_id, saved_search_id)

    @rpc
    def delete(self, user_id, saved_search_id):
        handlers.delete(self.db, user_id, saved_search_id, utc_now())

    @rpc
    def follow_link(self, user_id, saved_search_id, action):
        """A one-click link from an alert email (bus.links), already verified."""
        return handlers.follow_link(self.db, user_id, saved_search_id, action, utc_now())

    # the sender: fires on every instance (each email is claimed by its send key)

    @timer(interval=1.0)
    def send_alerts(self):
        handlers.send_due(self.db, utc_now(), self.outbox, self._settings())

    # events

    @subscribe("events", "event_created")
    def on_event_created(self, message):
        self._on_event(message)

    @subscribe("events", "event_updated")
    def on_event_updated(self, message):
        self._on_event(message)

    @subscribe("events", "event_deleted")
    def on_event_deleted(self, message):
        self._on_event(message)

    @subscribe("users", "user_email_changed")
    def on_user_email_changed(self, message):
        handlers.on_email_changed(self.db, message)

    @subscribe("users", "user_deleted")
    def on_user_deleted(self, message):
        handlers.on_user_deleted(self.db, message, utc_now())

    def _on_event(self, message):
        handlers.on_event_message(self.db, self.index, message, utc_now(), self._settings())

    def _settings(self):
        return handlers.Settings(
            digest_seconds=float(setting(self.config, "ALERTS_DIGEST_SECONDS", 86400)),
            batch=int(setting(self.config, "ALERTS_BATCH", 200)),
        )
