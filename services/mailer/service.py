"""The mailer: reached over AMQP; writes each email (smtp.py) and hands it to
``handlers.deliver``, which sends it at most once per send key (how: handlers.py)."""
from nameko.dependency_providers import Config
from nameko.rpc import rpc

from bus.announce import Announcer
from bus.config import public_url, setting
from bus.consul import ConsulRegistration
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.messages import utc_now
from bus.mongo import Mongo, database_health
from bus.reliable import subscribe

from . import handlers, smtp
from .post import Post


class MailerService:
    name = "mailer"

    db = Mongo()
    health = database_health
    announce = Announcer()
    post = Post()
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()
    config = Config()

    @subscribe("notifications", "reminder_due")
    def on_reminder_due(self, message):
        # a transient failure comes back as "deferred": the notifications service
        # hands the reminder over again later, with backoff
        links = handlers.reminder_links(setting(self.config, "JWT_SECRET"),
                                        public_url(self.config), utc_now())
        handlers.deliver(self.post, handlers.reminders(message["data"], self.post.sender,
                                                       links=links))

    @subscribe("users", "user_registered")
    def on_user_registered(self, message):
        user = message["data"]["user"]
        key = f"welcome:{user['id']}"
        self._deliver_once(handlers.Mail(
            key, "welcome", None, lambda: smtp.welcome_email(user, key, self.post.sender)))

    @subscribe("notifications", "event_cancelled_notice")
    def on_event_cancelled_notice(self, message):
        data = message["data"]
        user_id = data.get("user_id")  # none in a notice from before it was added
        stop_url, signed = handlers.stop_url(
            setting(self.config, "JWT_SECRET"), public_url(self.config), "stop_notices",
            user_id, user_id, utc_now())
        self._deliver_once(handlers.Mail(
            data["send_key"], "cancelled", None,
            lambda: smtp.cancelled_email(data["email"], data["event"], data["notifications"],
                                         data["send_key"], self.post.sender,
                                         series=data.get("series"), stop_url=stop_url,
                                         signed=signed)))

    @subscribe("alerts", "alert_due")
    def on_alert_due(self, message):
        data, base = message["data"], public_url(self.config)
        stop_url, signed = handlers.stop_url(
            setting(self.config, "JWT_SECRET"), base, "stop_alert", data["user_id"],
            data["saved_search"]["id"], utc_now())
        self._deliver_once(handlers.Mail(
            data["send_key"], "alert", None,
            lambda: smtp.alert_email(data["email"], data["saved_search"], data["events"],
                                     data["send_key"], stop_url, base, self.post.sender,
                                     signed=signed)))

    @rpc
    def withdraw(self, send_keys):
        """Keep reminders from being sent (their event was cancelled, their account
        deleted): ``{"withdrawn": [...], "taken": [...]}``; a taken key is being or
        was handed to the SMTP server."""
        return handlers.withdraw(self.db, send_keys, self.post.holder, utc_now())

    def _deliver_once(self, mail):
        """Nobody hands these over again: a transient failure raises, so bus.reliable
        retries the message with backoff (and parks it after the last attempt)."""
        [result] = handlers.deliver(self.post, [mail])
        if result is not None and result["status"] == "deferred":
            raise smtp.TransientFailure(result["reason"])
