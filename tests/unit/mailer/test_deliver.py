"""Once per send key: the mailer's sent log, against a real SecantusDB database.

SMTP is a recording function here; tests/integration/mailer sends to a real server."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest

from services.mailer import handlers, smtp, storage


@pytest.fixture
def db(new_database):
    return new_database("mailer")


class Server:
    """Accepts mail, or fails with the given errors first."""

    def __init__(self, *failures, delay=0):
        self.failures = list(failures)
        self.delay = delay
        self.accepted = []

    def __call__(self, email, committing):
        eventlet.sleep(self.delay)
        committing()
        if self.failures:
            raise self.failures.pop(0)
        self.accepted.append(email)


def deliver(db, server, key="reminder:n1:1", max_attempts=3, lease_seconds=30, now=None):
    return handlers.deliver(db, lambda *a: None, key, "reminder", "n1", f"mail for {key}",
                           server, max_attempts, lease_seconds,
                           **({"now": now} if now else {}))


def outcome(db, key="reminder:n1:1"):
    entry = db[storage.SENDS].find_one({"_id": key})
    return entry["status"], [m["event_type"] for m in entry.get("pending_events", [])]


def test_a_redelivered_key_is_not_sent_again(db):
    server = Server()
    assert deliver(db, server) == "sent"
    assert deliver(db, server) == "sent"
    assert server.accepted == ["mail for reminder:n1:1"]
    assert outcome(db) == ("sent", ["email_sent"])


def test_two_copies_at_once_send_one_mail(db):
    server = Server(delay=0.3)
    pool = eventlet.GreenPool()
    results = list(pool.imap(lambda _: deliver(db, server), range(3)))
    assert results == ["sent"] * 3
    assert len(server.accepted) == 1


def test_permanent_failure_is_reported_at_once(db):
    server = Server(smtp.PermanentFailure("550 no such mailbox"))
    assert deliver(db, server) == "failed"
    entry = db[storage.SENDS].find_one({"_id": "reminder:n1:1"})
    assert entry["pending_events"][0]["data"]["reason"] == "550 no such mailbox"
    assert deliver(db, Server()) == "failed"  # and never retried


def test_transient_failure_raises_for_a_retry_then_sends_once(db):
    server = Server(smtp.TransientFailure("451 try later"))
    with pytest.raises(smtp.TransientFailure):
        deliver(db, server)
    assert outcome(db) == ("retry", [])
    assert deliver(db, server) == "sent"
    assert len(server.accepted) == 1


def test_the_last_attempt_reports_failure_instead_of_retrying(db):
    server = Server(*[smtp.TransientFailure("421 busy")] * 3)
    for _ in range(2):
        with pytest.raises(smtp.TransientFailure):
            deliver(db, server)
    assert deliver(db, server) == "failed"
    entry = db[storage.SENDS].find_one({"_id": "reminder:n1:1"})
    assert entry["reason"] == "gave up after 3 attempts: 421 busy"


def test_a_dead_holders_claim_is_taken_over_after_its_lease(db):
    start = datetime.now(timezone.utc)
    storage.claim_first(db, "reminder:n1:1", "reminder", "n1", "dead-instance", start,
                        lease_seconds=30)
    server = Server()
    clock = iter([start + timedelta(seconds=s) for s in (1, 2, 3, 31, 31, 31, 31)])
    assert deliver(db, server, now=lambda: next(clock)) == "sent"
    assert len(server.accepted) == 1


def test_a_holder_that_died_while_handing_over_the_mail_is_not_repeated(db):
    start = datetime.now(timezone.utc)
    storage.claim_first(db, "reminder:n1:1", "reminder", "n1", "dead-instance", start,
                        lease_seconds=30)
    storage.committing(db, "reminder:n1:1", "dead-instance")
    server = Server()
    clock = iter([start + timedelta(seconds=s) for s in (1, 2, 3, 31, 31, 31, 31)])
    assert deliver(db, server, now=lambda: next(clock)) == "failed"
    assert server.accepted == []
    entry = db[storage.SENDS].find_one({"_id": "reminder:n1:1"})
    assert entry["reason"].startswith("interrupted while handing the mail")
    assert entry["pending_events"][0]["event_type"] == "email_failed"


def test_a_broken_connection_after_data_is_not_retried(db):
    server = Server(smtp.UncertainDelivery("SMTPServerDisconnected: lost"))
    assert deliver(db, server) == "failed"
    assert deliver(db, Server()) == "failed"
