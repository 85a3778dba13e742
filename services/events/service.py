"""The `events` service: the write model of events (API.md, docs/contracts.md).

Admin checks happen in the gateway; this service enforces the domain rules and
publishes `event_created` / `event_updated` / `event_deleted` through its outbox.
"""
import logging

from nameko.rpc import rpc

from bus.logs import CallContext
from bus.mongo import Mongo
from bus.outbox import Outbox
from services.events import handlers, storage

log = logging.getLogger(__name__)


class EventsService:
    name = "events"

    db = Mongo(prepare=storage.ensure_indexes)
    outbox = Outbox([storage.COLLECTION])
    context = CallContext()

    @rpc
    def create(self, fields):
        event = handlers.create(self.db, fields)
        self._publish(event["id"])
        return event

    @rpc
    def update(self, event_id, changes):
        event = handlers.update(self.db, event_id, changes)
        self._publish(event_id)
        return event

    @rpc
    def delete(self, event_id):
        handlers.delete(self.db, event_id)
        self._publish(event_id)

    @rpc
    def get(self, event_id):
        return handlers.get(self.db, event_id)

    @rpc
    def all_events(self, after_id=None, limit=500):
        return handlers.all_events(self.db, after_id, limit)

    @rpc
    def count(self):
        return handlers.count(self.db)

    @rpc
    def health(self):
        storage.ping(self.db)
        return "ok"

    def _publish(self, event_id):
        # The change is committed already; if the broker is down the sweeper publishes later.
        try:
            self.outbox(storage.COLLECTION, event_id)
        except Exception:
            log.exception("publishing the messages of event %s failed; the sweeper will retry",
                          event_id)
