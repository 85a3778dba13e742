"""The `search` service: the read model of events, kept up to date by `events.*` messages.

Consumers use bus.reliable.subscribe: a message that fails to apply is retried
with backoff and then parked for an operator (`invoke parked`, `invoke replay-parked`).
"""
from nameko.rpc import RpcProxy, rpc

from bus.consul import ConsulRegistration
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.mongo import Mongo, database_health
from bus.reliable import subscribe
from services.search import projection, queries, storage


class SearchService:
    name = "search"

    db = Mongo(prepare=storage.ensure_indexes)
    health = database_health
    events = RpcProxy("events")
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()

    @subscribe("events", "event_created")
    def on_event_created(self, message):
        projection.apply(self.db, message)

    @subscribe("events", "event_updated")
    def on_event_updated(self, message):
        projection.apply(self.db, message)

    @subscribe("events", "event_deleted")
    def on_event_deleted(self, message):
        projection.apply(self.db, message)

    @rpc
    def search(self, query):
        return queries.search(self.db, query)

    @rpc
    def get(self, event_id):
        return queries.get(self.db, event_id)

    @rpc
    def rebuild(self):
        return projection.rebuild(self.db, self.events.all_events, total=self.events.count())

    @rpc
    def rebuild_status(self):
        """Progress of the current or last rebuild, for `invoke rebuild-search`'s bar."""
        return storage.rebuild_status(self.db)
