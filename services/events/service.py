"""The `events` service: the write model of events (API.md, docs/contracts.md).

Admin checks happen in the gateway; this service enforces the domain rules and
publishes `event_created` / `event_updated` / `event_deleted` through its outbox.
"""
from nameko.rpc import rpc

import bus.reliable  # noqa: F401  nameko 2.14 fixes: a broker restart must not end the service
from bus.consul import ConsulRegistration
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from services.events import handlers, storage


class EventsService:
    name = "events"

    db = Mongo(prepare=storage.ensure_indexes)
    health = database_health
    outbox = Outbox([storage.COLLECTION])
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()

    @rpc
    def create(self, fields, command_id=None):
        event = handlers.create(self.db, fields, command_id)
        self.outbox(storage.COLLECTION, event["id"])
        return event

    @rpc
    def create_series(self, fields, command_id=None):
        occurrences = handlers.create_series(self.db, fields, command_id)
        for event in occurrences:
            self.outbox(storage.COLLECTION, event["id"])
        return occurrences

    @rpc
    def get_series(self, series_id):
        return handlers.series(self.db, series_id)

    @rpc
    def update_series(self, series_id, changes):
        result = handlers.update_series(self.db, series_id, changes)
        for event in result["changed"]:
            self.outbox(storage.COLLECTION, event["id"])
        return result

    @rpc
    def delete_series(self, series_id):
        deleted = handlers.delete_series(self.db, series_id)
        for event_id in deleted:
            self.outbox(storage.COLLECTION, event_id)
        return deleted

    @rpc
    def update(self, event_id, changes):
        event = handlers.update(self.db, event_id, changes)
        self.outbox(storage.COLLECTION, event_id)
        return event

    @rpc
    def delete(self, event_id):
        handlers.delete(self.db, event_id)
        self.outbox(storage.COLLECTION, event_id)

    @rpc
    def get(self, event_id):
        return handlers.get(self.db, event_id)

    @rpc
    def all_events(self, after_id=None, limit=500):
        return handlers.all_events(self.db, after_id, limit)

    @rpc
    def count(self):
        return handlers.count(self.db)
