"""What the notifications and mailer integration tests share: a real SMTP server
that records what it receives, and publishing events as the real services do."""
import email
import threading
import time
import uuid
from datetime import timedelta
from email import policy

from aiosmtpd.controller import Controller
from nameko.standalone.events import event_dispatcher

from bus.messages import iso, new_message, utc_now
from tests.support.secantus import free_port


class Inbox:
    """An aiosmtpd server on a free loopback port. ``replies`` scripts the answers
    to the next DATA commands (e.g. a 451, then a 550); after them it accepts."""

    def __init__(self):
        self.received = []  # (unix time, parsed message)
        self.replies = []
        self.sessions = set()  # the SMTP connections that brought mail
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.sessions.add(id(session))
            if self.replies:
                return self.replies.pop(0)
            message = email.message_from_bytes(envelope.content, policy=policy.default)
            self.received.append((time.time(), message))
        return "250 OK"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    @property
    def port(self):
        return self.controller.port

    def messages(self, to=None):
        return [m for _, m in self.received if to is None or m["To"] == to]

    def wait_for(self, count, timeout=15, to=None):
        """The messages (to ``to``) once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages(to)) >= count:
                return self.messages(to)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.messages(to))} of {count} emails after {timeout}s")


def event_resource(starts_in=timedelta(hours=2), version=1, status="scheduled", **fields):
    now = utc_now()
    return {
        "id": uuid.uuid4().hex, "title": "Jazz night", "description": "Live music",
        "topics": ["jazz"], "starts_at": iso(now + starts_in), "ends_at": None,
        "timezone": "Europe/Berlin",
        "place": {"name": "Blue Note", "address": "Main St 1", "lat": 52.5, "lng": 13.4},
        "organizer": None, "status": status, "version": version,
        "created_at": iso(now), "updated_at": iso(now), **fields,
    }


def user_resource(name="ann", secondary=()):
    return {"id": uuid.uuid4().hex, "username": name, "email": f"{name}@example.com",
            "secondary_emails": list(secondary), "role": "user",
            "created_at": iso(utc_now())}


def publish(config, source, event_type, aggregate_id, version, **data):
    """Publish an envelope to ``source``'s exchange, as that service's outbox does."""
    message = new_message(source, event_type, aggregate_id, version, **data)
    event_dispatcher(config)(source, event_type, message)
    return message


def publish_event(config, event_type, event, **extra):
    if event_type == "event_updated":
        extra.setdefault("changed", [])
        extra.setdefault("previous", {})
    return publish(config, "events", event_type, event["id"], event["version"],
                   event=event, **extra)


def wait_until(check, timeout=10, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"not true after {timeout}s: {check}")
