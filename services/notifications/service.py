"""The notifications service: reminders for events, their scheduler and follow-ups.

Thin entrypoints: each one calls a plain function of handlers.py or scheduler.py.
"""
import eventlet
from nameko.dependency_providers import Config
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy, rpc
from nameko.timer import timer

from bus.announce import Announcer
from bus.config import setting
from bus.consul import ConsulRegistration
from bus.errors import NotFound, Unavailable
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.messages import utc_now
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from bus.reliable import subscribe

from . import feeds, handlers, scheduler, storage
from .handlers import parse_time


def prepare_database(db):
    storage.ensure_indexes(db)
    feeds.ensure_indexes(db)


class NotificationsService:
    name = "notifications"

    db = Mongo(prepare=prepare_database)
    health = database_health
    outbox = Outbox([storage.NOTICES])
    announce = Announcer()  # reminder_due: the reminders' lease covers a lost message
    clock = scheduler.Clock()
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()
    config = Config()
    # Only for an event that has not reached the local copy yet (handlers.known_event).
    events_rpc = RpcProxy("events")
    # To keep a reminder the mailer has not handed to SMTP yet from going out.
    mailer_rpc = RpcProxy("mailer")

    # RPC (the gateway)

    @rpc
    def create(self, user, fields, command_id=None):
        created = handlers.create(self.db, user, fields, utc_now(), self._fetch_event,
                                  self.outbox, self._withdraw, command_id)
        self.clock.wake(parse_time(created["remind_at"]))
        return created

    @rpc
    def list(self, user_id, filters):
        return handlers.list_reminders(self.db, user_id, filters)

    @rpc
    def get(self, user_id, notification_id):
        return handlers.get(self.db, user_id, notification_id)

    @rpc
    def update(self, user, notification_id, changes):
        updated = handlers.update(self.db, user, notification_id, changes, utc_now(),
                                  self.outbox, self._withdraw)
        self.clock.wake(parse_time(updated["remind_at"]))
        return updated

    @rpc
    def snooze(self, user_id, notification_id, minutes):
        snoozed = handlers.snooze(self.db, user_id, notification_id, minutes, utc_now(),
                                  self.outbox, self._withdraw)
        self.clock.wake(parse_time(snoozed["remind_at"]))
        return snoozed

    @rpc
    def delete(self, user_id, notification_id):
        handlers.delete(self.db, user_id, notification_id)

    @rpc
    def follow_link(self, user_id, notification_id, action, arm):
        """A one-click link from a reminder email (bus.links), already verified."""
        outcome = handlers.follow_link(self.db, user_id, notification_id, action, arm,
                                       utc_now(), self.outbox, self._withdraw)
        self.clock.wake(parse_time(outcome["notification"]["remind_at"]))
        return outcome

    @rpc
    def email_preferences(self, user_id):
        return handlers.email_preferences(self.db, user_id)

    @rpc
    def change_email_preferences(self, user_id, changes):
        return handlers.change_email_preferences(self.db, user_id, changes, utc_now())

    @rpc
    def stop_notices(self, user_id):
        """A cancellation notice's one-click link (bus.links), already verified."""
        return handlers.stop_notices(self.db, user_id, utc_now())

    @rpc
    def new_calendar_feed(self, user_id):
        return feeds.new_feed(self.db, user_id, utc_now())

    @rpc
    def calendar_feed(self, token):
        return feeds.feed(self.db, token)

    # the scheduler: fires on every instance (claims are atomic); a tick with nothing
    # due asks the database nothing (scheduler.Clock)

    @timer(interval=0.05)
    def hand_over_due_reminders(self):
        scheduler.tick(self.db, self.clock, utc_now(), self.announce, self._withdraw,
                       self.outbox, self._settings())

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

    @subscribe("events", "series_cancelled")
    def on_series_cancelled(self, message):
        handlers.on_series_cancelled(self.db, message, utc_now(), self.outbox, self._withdraw)

    @subscribe("users", "user_email_changed")
    def on_user_email_changed(self, message):
        handlers.on_account_message(self.db, message, utc_now())

    @subscribe("users", "user_email_removed")
    def on_user_email_removed(self, message):
        handlers.on_account_message(self.db, message, utc_now())

    @subscribe("users", "user_deleted")
    def on_user_deleted(self, message):
        handlers.on_user_deleted(self.db, message, utc_now(), self._withdraw)
        feeds.forget(self.db, message["data"]["user_id"])

    @subscribe("mailer", "delivery_report")
    def on_delivery_report(self, message):
        # a burst's claims first: its mails are out already, the reminders still due
        # are not
        self.clock.after_claims(limit=1.5)
        retry_at = handlers.on_delivery_report(self.db, message["data"]["outcomes"], utc_now())
        if retry_at is not None:
            self.clock.sweep_at(retry_at)

    def _on_event(self, message):
        if handlers.on_event_message(self.db, message, utc_now(), self.outbox, self._withdraw):
            self.clock.wake()  # relative reminders moved: one may now be due sooner

    def _settings(self):
        config = self.config
        return scheduler.Settings(
            catch_up_hours=float(setting(config, "REMINDER_CATCH_UP_HOURS", 24)),
            lease_seconds=float(setting(config, "REMINDER_LEASE_SECONDS", 30)),
            give_up_seconds=float(setting(config, "REMINDER_GIVE_UP_SECONDS", 900)),
            batch=int(setting(config, "REMINDER_BATCH", 50)),
        )

    def _rpc_seconds(self):
        return float(setting(self.config, "RPC_TIMEOUT", 5))

    def _fetch_event(self, event_id):
        """events.get over AMQP RPC, bounded by RPC_TIMEOUT; None if there is no such event."""
        try:
            with eventlet.Timeout(self._rpc_seconds()):
                return self.events_rpc.get(event_id)
        except NotFound:
            return None
        except (eventlet.Timeout, UnknownService):
            raise Unavailable("The events service did not answer in time.") from None

    def _withdraw(self, send_keys):
        """mailer.withdraw over AMQP RPC, bounded by RPC_TIMEOUT: (withdrawn, taken)."""
        try:
            with eventlet.Timeout(self._rpc_seconds()):
                answer = self.mailer_rpc.withdraw(send_keys)
        except (eventlet.Timeout, UnknownService):
            raise Unavailable("The mailer did not answer in time.") from None
        return answer["withdrawn"], answer["taken"]
