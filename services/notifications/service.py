"""The notifications service: reminders for events, their scheduler and follow-ups.

Thin entrypoints: each one calls a plain function of handlers.py or scheduler.py.
"""
import eventlet
from nameko.dependency_providers import Config
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from bus.config import setting
from bus.consul import ConsulRegistration
from bus.errors import NotFound, Unavailable
from bus.logs import CallContext
from bus.messages import utc_now
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from bus.reliable import subscribe

from . import handlers, scheduler, storage


class NotificationsService:
    name = "notifications"

    db = Mongo(prepare=storage.ensure_indexes)
    health = database_health
    outbox = Outbox([storage.REMINDERS, storage.NOTICES])
    context = CallContext()
    consul = ConsulRegistration()
    config = Config()
    # Only for an event that has not reached the local copy yet (handlers.known_event).
    events_rpc = RpcProxy("events")

    # RPC (the gateway)

    @rpc
    def create(self, user, fields):
        return handlers.create(self.db, user, fields, utc_now(), self._fetch_event, self.outbox)

    @rpc
    def list(self, user_id, filters):
        return handlers.list_reminders(self.db, user_id, filters)

    @rpc
    def get(self, user_id, notification_id):
        return handlers.get(self.db, user_id, notification_id)

    @rpc
    def update(self, user, notification_id, changes):
        return handlers.update(self.db, user, notification_id, changes, utc_now())

    @rpc
    def snooze(self, user_id, notification_id, minutes):
        return handlers.snooze(self.db, user_id, notification_id, minutes, utc_now())

    @rpc
    def delete(self, user_id, notification_id):
        handlers.delete(self.db, user_id, notification_id)

    # the scheduler (fires on every instance; claims are atomic)

    @timer(interval=0.25)
    def send_due_reminders(self):
        catch_up = float(setting(self.config, "REMINDER_CATCH_UP_HOURS", 24))
        scheduler.tick(self.db, utc_now(), self.outbox, catch_up)

    # events

    @subscribe("events", "event_created")
    def on_event_created(self, message):
        handlers.on_event_message(self.db, message, utc_now(), self.outbox)

    @subscribe("events", "event_updated")
    def on_event_updated(self, message):
        handlers.on_event_message(self.db, message, utc_now(), self.outbox)

    @subscribe("events", "event_deleted")
    def on_event_deleted(self, message):
        handlers.on_event_message(self.db, message, utc_now(), self.outbox)

    @subscribe("users", "user_email_changed")
    def on_user_email_changed(self, message):
        data = message["data"]
        handlers.follow_to_primary(self.db, data["user"], data["old_email"], utc_now())

    @subscribe("users", "user_email_removed")
    def on_user_email_removed(self, message):
        data = message["data"]
        handlers.follow_to_primary(self.db, data["user"], data["email"], utc_now())

    @subscribe("users", "user_deleted")
    def on_user_deleted(self, message):
        handlers.on_user_deleted(self.db, message["data"]["user_id"])

    @subscribe("mailer", "email_sent")
    def on_email_sent(self, message):
        handlers.on_email_sent(self.db, message["data"], utc_now())

    @subscribe("mailer", "email_failed")
    def on_email_failed(self, message):
        handlers.on_email_failed(self.db, message["data"], utc_now())

    def _fetch_event(self, event_id):
        """events.get over AMQP RPC, bounded by RPC_TIMEOUT; None if there is no such event."""
        seconds = float(setting(self.config, "RPC_TIMEOUT", 5))
        try:
            with eventlet.Timeout(seconds):
                return self.events_rpc.get(event_id)
        except NotFound:
            return None
        except (eventlet.Timeout, UnknownService):
            raise Unavailable("The events service did not answer in time.") from None
