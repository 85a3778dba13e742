"""Idempotency-Key on POST (API.md v1.1), over HTTP, against the whole system: a retry
gets the first answer and changes nothing, on either gateway process, and a retry
after a 503 (the command was done, but its answer came too late) makes nothing twice:
neither an event nor a reminder."""
import signal
import uuid

import requests

from tests.e2e.conftest import E2E_INSTANCES
from tests.e2e.helpers import assert_error, login, new_account
from tests.e2e.reminders_support import Person, create_event, list_all, wait_until
from tests.support.waiting import wait_for

EVENT = {"title": "Idempotent gig", "starts_at": "2033-05-01T20:00:00+02:00"}


def keyed(headers, key):
    return {**headers, "Idempotency-Key": key}


def fresh_post(system, path, **kwargs):
    """A POST on a new connection: the kernel picks either gateway process."""
    kwargs.setdefault("timeout", 30)
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.post(system.base_url + path, headers=headers, **kwargs)


def listed(http, topic):
    return http.get(f"/events?topic={topic}&status=all").json()["items"]


def test_a_retry_gets_the_first_answer_and_changes_nothing(system, http, admin_headers):
    topic = f"idem{uuid.uuid4().hex[:10]}"
    body, key = {**EVENT, "topics": [topic]}, uuid.uuid4().hex
    first = http.post("/events", json=body, headers=keyed(admin_headers, key))
    assert first.status_code == 201, first.text
    seen = set()
    for _ in range(10 * E2E_INSTANCES["gateway"]):  # over new connections: both processes
        again = fresh_post(system, "/events", json=body, headers=keyed(admin_headers, key))
        assert (again.status_code, again.json()) == (201, first.json())
        assert again.headers["Idempotent-Replayed"] == "true"
        seen.add(again.headers["X-EventPost-Gateway"])
        if len(seen) == E2E_INSTANCES["gateway"]:
            break
    assert len(seen) == E2E_INSTANCES["gateway"]
    assert [e["id"] for e in listed(http, topic)] == [first.json()["id"]]
    # another caller with the same key is another request
    other = http.post("/events", json=body, headers=keyed(admin_headers, key + "-x"))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_the_same_key_with_another_body_is_a_422_naming_the_header(http, admin_headers):
    key = uuid.uuid4().hex
    body = {**EVENT, "topics": ["idempotency"]}
    assert http.post("/events", json=body, headers=keyed(admin_headers, key)).status_code == 201
    changed = http.post("/events", json={**body, "title": "Another"},
                        headers=keyed(admin_headers, key))
    assert_error(changed, 422, "validation_error", ["Idempotency-Key"])
    bad = http.post("/events", json=body, headers=keyed(admin_headers, "x" * 129))
    assert_error(bad, 422, "validation_error", ["Idempotency-Key"])


def test_an_error_answer_is_kept_too_and_a_401_is_not(http):
    account = new_account()
    key = uuid.uuid4().hex
    assert http.post("/users", json=account, headers={"Idempotency-Key": key}).status_code == 201
    # the same registration again: the first 201, not a 409 for a taken username
    again = http.post("/users", json=account, headers={"Idempotency-Key": key})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    headers = login(http, account)
    emails_key = uuid.uuid4().hex
    missing = http.post("/users/me/emails", json={"email": "not-an-email"},
                        headers=keyed(headers, emails_key))
    assert_error(missing, 422, "validation_error", ["email"])
    assert http.post("/users/me/emails", json={"email": "not-an-email"},
                     headers=keyed(headers, emails_key)).headers["Idempotent-Replayed"] == "true"


def test_a_retry_after_a_503_makes_nothing_twice(system, http, admin_headers):
    """The events service stops (SIGSTOP) with the command on its queue: the gateway
    answers 503 after its RPC timeout; the service resumes and does the command; the
    retry with the same key answers with that event and makes no second one."""
    topic = f"idem{uuid.uuid4().hex[:10]}"
    body, key = {**EVENT, "topics": [topic]}, uuid.uuid4().hex
    [events] = [c for c in system.system.children if c.name == "events"]
    events.signal_group(signal.SIGSTOP)
    try:
        failed = http.post("/events", json=body, headers=keyed(admin_headers, key))
    finally:
        events.signal_group(signal.SIGCONT)
    assert_error(failed, 503, "unavailable")
    # the command, done late, shows up in search
    [made] = wait_until(lambda: listed(http, topic), 20, "the stopped command ran")

    retried = http.post("/events", json=body, headers=keyed(admin_headers, key))
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == made["id"]
    assert http.post("/events", json=body, headers=keyed(admin_headers, key)).json() == \
        retried.json()
    # A marker made after the retries reaches search after any event they made would
    # (one events service, its outbox relayed in order): once it is listed, so would be
    # a second copy.
    marker = http.post("/events", json={**body, "title": "Marker"}, headers=admin_headers)
    assert marker.status_code == 201, marker.text
    assert wait_for(lambda: marker.json()["id"] in {e["id"] for e in listed(http, topic)},
                    timeout=20), "the marker never became searchable"
    assert sorted(e["id"] for e in listed(http, topic)) == sorted(
        [made["id"], marker.json()["id"]])


def test_a_reminder_retried_after_a_503_is_made_once(system, http, admin_headers):
    """Both notifications processes stop (SIGSTOP) with the create on their RPC queue:
    the gateway answers 503; they resume and make the reminder; the retry with the
    same key answers with that reminder, and the list (read from the service's
    database, so a second one would be there before its 201) holds only it."""
    person = Person(http)
    event = create_event(http, admin_headers)
    body, key = {"event_id": event["id"], "before_minutes": 60}, uuid.uuid4().hex
    stopped = [c for c in system.system.children
               if c.name == "notifications" or c.name.startswith("notifications-")]
    assert len(stopped) == E2E_INSTANCES["notifications"]
    for child in stopped:
        child.signal_group(signal.SIGSTOP)
    try:
        failed = http.post("/notifications", json=body, headers=keyed(person.headers, key))
    finally:
        for child in stopped:
            child.signal_group(signal.SIGCONT)
    assert_error(failed, 503, "unavailable")
    [made] = wait_until(lambda: list_all(http, person.headers), 20, "the stopped command ran")

    retried = http.post("/notifications", json=body, headers=keyed(person.headers, key))
    assert retried.status_code == 201, retried.text
    assert retried.json()["id"] == made["id"]
    assert fresh_post(system, "/notifications", json=body,
                      headers=keyed(person.headers, key)).json() == retried.json()
    assert [r["id"] for r in list_all(http, person.headers)] == [made["id"]]
