"""The mailer: reached only over AMQP; renders each email (smtp.py) and hands it to
``handlers.deliver``, which sends it at most once per send key (how: handlers.py)."""
from nameko.dependency_providers import Config

from bus.config import setting
from bus.consul import ConsulRegistration
from bus.logs import CallContext
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from bus.reliable import subscribe

from . import handlers, smtp, storage


class MailerService:
    name = "mailer"

    db = Mongo()
    health = database_health
    outbox = Outbox([storage.SENDS])
    context = CallContext()
    consul = ConsulRegistration()
    config = Config()

    @subscribe("users", "user_registered")
    def on_user_registered(self, message):
        user = message["data"]["user"]
        key = f"welcome:{user['id']}"
        self._deliver(key, "welcome", None, smtp.welcome_email(user, key, self._sender()))

    @subscribe("notifications", "reminder_due")
    def on_reminder_due(self, message):
        data = message["data"]
        notification = data["notification"]
        email = smtp.reminder_email(notification, data["event"], data["send_key"],
                                    self._sender())
        self._deliver(data["send_key"], "reminder", notification["id"], email)

    @subscribe("notifications", "event_cancelled_notice")
    def on_event_cancelled_notice(self, message):
        data = message["data"]
        email = smtp.cancelled_email(data["email"], data["event"], data["notifications"],
                                     data["send_key"], self._sender())
        self._deliver(data["send_key"], "cancelled", None, email)

    def _sender(self):
        return setting(self.config, "MAIL_FROM", smtp.DEFAULT_SENDER)

    def _deliver(self, send_key, kind, notification_id, email):
        config = self.config
        host = setting(config, "SMTP_HOST", "127.0.0.1")  # unset: the local sink
        port = int(setting(config, "SMTP_PORT", 1025))
        timeout = float(setting(config, "SMTP_TIMEOUT", 10))
        handlers.deliver(
            self.db, self.outbox, send_key, kind, notification_id, email,
            transmit=lambda mail, committing: smtp.send(mail, host, port, timeout,
                                                        committing),
            max_attempts=int(setting(config, "HANDLER_MAX_ATTEMPTS", 5)),
            lease_seconds=float(setting(config, "MAILER_LEASE_SECONDS", 30)),
        )
