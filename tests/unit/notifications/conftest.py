from datetime import datetime, timedelta, timezone

import pytest

from bus.errors import Unavailable
from bus.messages import iso, new_message
from services.mailer import storage as mailer_storage
from services.notifications import handlers, scheduler, storage
from tests.support.fakes import unit_database

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def db(request):
    """In memory (tests.support.fakes.FakeDatabase under the real storage module)."""
    return unit_database(request, "notifications", prepare=storage.ensure_indexes)


@pytest.fixture
def mailer_db(request):
    return unit_database(request, "mailer")


@pytest.fixture
def withdraw(mailer_db):
    """The mailer's withdrawal (its storage, on its own database), as the RPC runs it;
    ``withdraw.take(key)`` stands for the mailer handing that key to SMTP first."""
    def call(send_keys):
        call.calls.append(list(send_keys))
        return mailer_storage.withdraw(mailer_db, send_keys, "test-mailer", NOW)

    def take(key):
        mailer_storage.take(mailer_db, [{"_id": key, "kind": "reminder", "holder": "m1",
                                         "at": NOW}])

    call.calls, call.take = [], take
    return call


@pytest.fixture
def published():
    """Stands in for the Announcer: the messages published, in order."""
    messages = []

    def publish(message):
        messages.append(message)

    publish.messages = messages
    publish.reminders = lambda: [item for m in messages if m["event_type"] == "reminder_due"
                                 for item in m["data"]["reminders"]]
    return publish


@pytest.fixture
def hand_over(db, published, withdraw, relayed):
    """``hand_over(at)``: the scheduler claims what is due at ``at`` and publishes it."""
    def run(at, settings=None, publish=None):
        return scheduler.claim_due(db, at, publish or published, withdraw, relayed,
                                   settings or scheduler.Settings(), clock=lambda: at)
    return run


@pytest.fixture
def relayed():
    """Stands in for the outbox's publish-now: records what was handed to it."""
    calls = []

    def relay(collection, document_id):
        calls.append((collection, document_id))

    relay.calls = calls
    return relay


def user(user_id="u1", email="ann@example.com", secondary=("Ann.Work@Example.com",)):
    return {"id": user_id, "username": user_id, "email": email,
            "secondary_emails": list(secondary), "role": "user",
            "created_at": "2026-01-01T00:00:00Z"}


def event(event_id="e1", starts_at=NOW + timedelta(days=2), version=1, status="scheduled",
          timezone_name="Europe/Berlin"):
    return {
        "id": event_id, "title": "Jazz night", "description": "Live music", "topics": ["jazz"],
        "starts_at": iso(starts_at), "ends_at": None, "timezone": timezone_name,
        "place": {"name": "Blue Note", "address": "Main St 1", "lat": 52.5, "lng": 13.4},
        "organizer": None, "status": status, "version": version,
        "created_at": iso(NOW), "updated_at": iso(NOW),
    }


def event_message(event_type, resource):
    data = {"event": resource}
    if event_type == "event_updated":
        data.update(changed=[], previous={})
    return new_message("events", event_type, resource["id"], resource["version"], **data)


def no_withdraw(send_keys):
    raise AssertionError(f"nothing should be withdrawn here: {send_keys}")


def known(db, resource, relay=lambda *a: None):
    """Put ``resource`` into the service's local copy, as event_created does."""
    handlers.on_event_message(db, event_message("event_created", resource), NOW, relay,
                              no_withdraw)
    return resource


def no_fetch(event_id):
    """The events service does not answer: the local copy decides."""
    raise Unavailable("The events service did not answer in time.")
