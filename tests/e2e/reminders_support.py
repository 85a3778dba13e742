"""Helpers shared by test_notifications.py and test_reminder_delivery.py.

Accounts, events and reminders made over HTTP the way a user (or an admin) makes
them, polling with deadlines (never a fixed sleep), and reading the mail sink's
``.eml`` files: a file's name starts with its arrival time in nanoseconds
(services/mailer/sink.py), which is what the delivery-time assertions measure.
"""
import time
import uuid
from datetime import datetime, timedelta, timezone

from pymongo import MongoClient

from tests.e2e.conftest import read_mail
from tests.e2e.helpers import login, new_account

SEND_KEY_HEADER = "X-EventPost-Send-Key"
IDLE_TIMEOUT = 15.0  # how long the system may take to handle what is in flight
# API.md's notification, plus the added failure_reason.
NOTIFICATION_FIELDS = {"id", "event_id", "email", "subject", "message", "remind_at",
                       "before_minutes", "status", "created_at", "updated_at", "sent_at",
                       "failure_reason"}
# An event far in the future, in a zone far from UTC so "the start in the event's
# time zone" (20:30 in Tokyo) cannot be confused with the UTC start (11:30).
EVENT = {
    "description": "Live quartet",
    "topics": ["music", "jazz"],
    "starts_at": "2031-12-05T20:30:00+09:00",
    "ends_at": "2031-12-05T23:00:00+09:00",
    "timezone": "Asia/Tokyo",
    "place": {"name": "Blue Note Tokyo", "address": "6-3-16 Minami-Aoyama", "lat": 35.6614,
              "lng": 139.7155},
    "organizer": "Tokyo Jazz Club",
}
EVENT_STARTS_UTC = datetime(2031, 12, 5, 11, 30, tzinfo=timezone.utc)


# --- time --------------------------------------------------------------------------

def utc_now():
    return datetime.now(timezone.utc)


def stamp(moment):
    """RFC 3339 with Z, whole seconds (what a client sends)."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def parse(text):
    assert isinstance(text, str) and text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def whole_seconds_from_now(seconds):
    """A whole second at least ``seconds`` from now."""
    now = utc_now()
    return now.replace(microsecond=0) + timedelta(seconds=seconds + 1)


def wait_until(check, timeout, what, interval=0.1):
    """Poll ``check()`` until it returns something truthy, within ``timeout`` seconds;
    fails with the last value it returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {value!r})")
        time.sleep(interval)


# --- accounts ----------------------------------------------------------------------

class Person:
    """A registered, logged-in user: ``account`` (what they typed), ``user`` (the
    resource), ``headers`` (their bearer token) and ``email`` (the primary)."""

    def __init__(self, http, secondary=0):
        self.account = new_account()
        response = http.post("/users", json=self.account)
        assert response.status_code == 201, response.text
        self.user = response.json()
        self.headers = login(http, self.account)
        self.secondary = []
        for index in range(secondary):
            address = f"{self.account['username']}.alt{index}@example.net"
            added = http.post("/users/me/emails", json={"email": address}, headers=self.headers)
            assert added.status_code == 201, added.text
            self.secondary.append(address)

    @property
    def email(self):
        return self.account["email"]


# --- admin and events ----------------------------------------------------------------

def create_event(http, admin_headers, **changes):
    body = {**EVENT, "title": f"Jazz night {uuid.uuid4().hex[:8]}", **changes}
    response = http.post("/events", json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    return response.json()


# --- reminders ---------------------------------------------------------------------

def create_reminder(http, headers, event_id, **fields):
    if "remind_at" not in fields and "before_minutes" not in fields:
        fields["before_minutes"] = 60
    response = http.post("/notifications", json={"event_id": event_id, **fields},
                         headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def get_reminder(http, headers, reminder_id):
    response = http.get(f"/notifications/{reminder_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_reminder(http, headers, reminder_id, check, timeout=10, what="reminder"):
    """Poll GET /notifications/{id} until ``check(resource)``; returns the resource."""
    last = {}

    def probe():
        last["value"] = get_reminder(http, headers, reminder_id)
        return check(last["value"])

    try:
        wait_until(probe, timeout, what)
    except AssertionError as error:
        raise AssertionError(f"{error}; the reminder: {last.get('value')}") from None
    return last["value"]


def list_all(http, headers, limit=100, **filters):
    """Every item of GET /notifications, page by page."""
    items, cursor = [], None
    while True:
        params = {"limit": limit, **filters}
        if cursor:
            params["cursor"] = cursor
        response = http.get("/notifications", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


# --- mail --------------------------------------------------------------------------

def arrival(mail):
    """When the sink received the message (seconds since the epoch), from its file name."""
    return int(mail.path.name.split("-", 1)[0]) / 1e9


def send_key(mail):
    return mail.message[SEND_KEY_HEADER]


class MailReader:
    """Reads the sink's files incrementally (parsing each once), for large counts."""

    def __init__(self, system_mail_files, after=""):
        self.files = system_mail_files
        self.after = after
        self.mails = []

    def poll(self):
        for path in self.files():
            if path.name > self.after:
                self.mails.append(read_mail(path))
                self.after = path.name
        return self.mails


def no_more_mail(system, count, timeout=15.0, **query):
    """After the expected mail arrived: wait until the services have handled everything
    they were sent (``system.wait_until_idle``: a duplicate would have been sent by
    then), then check that no further mail matches; returns the matches. ``timeout``
    bounds that wait (at least IDLE_TIMEOUT); 0 checks at once, after an earlier call
    waited."""
    if timeout:
        system.wait_until_idle(timeout=max(timeout, IDLE_TIMEOUT))
    found = [m for m in system.mails_to(query["to"], query.get("after"))
             if query.get("subject", "").lower() in m.subject.lower()]
    assert len(found) <= count, f"expected {count} mail(s), got {found}"
    return found


# --- the notifications database (for what HTTP can no longer show) -------------------

def notifications_collection(system):
    """(client, the notifications service's reminders collection) of ``system``."""
    env = system.system.child_env
    client = MongoClient(env["MONGO_URI"], serverSelectionTimeoutMS=5000)
    database = client[f"{env.get('MONGO_DATABASE_PREFIX', '')}notifications"]
    return client, database["notifications"]
