"""Once per send key: the mailer's sent log, on the in-memory FakeDatabase under the real
storage module (copies racing through their round trips to the server:
tests/integration/mailer/test_storage_on_server.py).

SMTP is a recording stand-in for smtp.Pool here (tests/integration/mailer sends to a
real server); the reports go to a list instead of RabbitMQ."""
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from pymongo.errors import AutoReconnect

from services.mailer import handlers, smtp, storage
from services.mailer.post import Postman
from tests.support.fakes import unit_database


@pytest.fixture
def db(request):
    return unit_database(request, "mailer")


class Server:
    """Stands in for smtp.Pool: accepts mail, or fails with the given errors first.
    ``at`` says when a failure happens: "before" (MAIL/RCPT, nothing handed over) or
    "after" the hand-over mark (the DATA exchange)."""

    size = 4

    def __init__(self, *failures, delay=0, at="after"):
        self.failures = list(failures)
        self.delay, self.at = delay, at
        self.accepted = []

    def send(self, email, committing):
        eventlet.sleep(self.delay)
        if self.failures and self.at == "before":
            raise self.failures.pop(0)
        if not committing():
            return False
        if self.failures:
            raise self.failures.pop(0)
        self.accepted.append(email)
        return True

    def close(self):
        pass


class Reports(list):
    def __call__(self, message):
        assert message["event_type"] == "delivery_report"
        self.extend(message["data"]["outcomes"])

    def by_status(self):
        return [(o["send_key"], o["status"]) for o in self]


@pytest.fixture
def reports():
    return Reports()


def postman(db, server, reports, holder="me", lease_seconds=30):
    return Postman(db, reports, server, lease_seconds=lease_seconds, holder=holder)


def mail(key="reminder:n1:1", attempt=1, write=None):
    return handlers.Mail(key, "reminder", key.split(":")[1],
                         write or (lambda: f"mail for {key}"), attempt)


def deliver(post, *mails):
    results = [r and r["status"] for r in handlers.deliver(post, list(mails or [mail()]))]
    post.drain()  # reports go out in the background
    return results


def test_a_batch_is_sent_and_reported_once(db, reports):
    server = Server()
    post = postman(db, server, reports)
    keys = [f"reminder:n{i}:1" for i in range(10)]
    assert deliver(post, *[mail(k) for k in keys]) == ["sent"] * 10
    assert sorted(server.accepted) == sorted(f"mail for {k}" for k in keys)
    assert sorted(reports.by_status()) == sorted((k, "sent") for k in keys)
    assert all(o["at"] and o["notification_id"] for o in reports)
    assert set(storage.find_outcomes(db, keys)) == set(keys)


def test_a_redelivered_key_is_not_sent_again_but_reported_again(db, reports):
    server = Server()
    post = postman(db, server, reports)
    assert deliver(post) == ["sent"]
    assert deliver(post, mail(attempt=2)) == ["sent"]  # handed over again: from the log
    assert deliver(post) == ["sent"]  # a copy of the first message
    assert server.accepted == ["mail for reminder:n1:1"]
    assert reports.by_status() == [("reminder:n1:1", "sent")] * 3


def test_an_email_that_cannot_be_written_fails_at_once_with_the_reason(db, reports):
    def broken():
        raise smtp.BuildError("cannot write the email: UnicodeEncodeError: surrogates")

    server = Server()
    assert deliver(postman(db, server, reports), mail(write=broken)) == ["failed"]
    assert server.accepted == []
    [report] = reports
    assert report["reason"] == "cannot write the email: UnicodeEncodeError: surrogates"


def test_permanent_failure_is_reported_at_once_and_never_retried(db, reports):
    server = Server(smtp.PermanentFailure("550 no such mailbox"))
    post = postman(db, server, reports)
    assert deliver(post) == ["failed"]
    assert reports[0]["reason"] == "550 no such mailbox"
    assert deliver(post, mail(attempt=2)) == ["failed"]
    assert server.accepted == []
    assert reports.by_status() == [("reminder:n1:1", "failed")] * 2


@pytest.mark.parametrize("at", ["before", "after"])
def test_transient_failure_is_deferred_and_the_key_given_back(db, reports, at):
    server = Server(smtp.TransientFailure("451 try later"), at=at)
    post = postman(db, server, reports)
    assert deliver(post) == ["deferred"]
    assert reports[0]["reason"] == "451 try later"
    assert storage.find_marks(db, ["reminder:n1:1"]) == {}
    assert storage.find_outcomes(db, ["reminder:n1:1"]) == {}
    assert deliver(post, mail(attempt=2)) == ["sent"]
    assert len(server.accepted) == 1


def test_a_database_error_while_taking_the_key_defers_it(db, reports):
    class Flaky(Postman):
        def _write_marks(self, mails):
            raise AutoReconnect("the database restarted")

    server = Server()
    post = Flaky(db, reports, server, holder="me")
    assert deliver(post) == ["deferred"]
    assert server.accepted == []


def test_a_broken_connection_after_data_is_not_retried(db, reports):
    server = Server(smtp.UncertainDelivery("SMTPServerDisconnected: lost"))
    post = postman(db, server, reports)
    assert deliver(post) == ["failed"]
    assert reports[0]["reason"].startswith("interrupted while handing the mail")
    assert deliver(post, mail(attempt=2)) == ["failed"]
    assert deliver(post) == ["failed"]
    assert server.accepted == []


def test_a_holder_that_died_while_handing_over_the_mail_is_not_repeated(db, reports):
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=31)
    storage.take(db, [{"_id": "reminder:n1:1", "kind": "reminder", "holder": "dead",
                       "at": long_ago}])
    server = Server()
    assert deliver(postman(db, server, reports)) == ["failed"]
    assert server.accepted == []
    assert reports[0]["reason"].startswith("interrupted while handing the mail")
    assert storage.find_outcomes(db, ["reminder:n1:1"])["reminder:n1:1"]["status"] == "failed"


def test_a_live_holders_key_is_left_to_it(db, reports):
    storage.take(db, [{"_id": "reminder:n1:1", "kind": "reminder", "holder": "alive",
                       "at": datetime.now(timezone.utc)}])
    server = Server()
    assert deliver(postman(db, server, reports)) == [None]
    assert server.accepted == [] and list(reports) == []


def test_a_withdrawn_key_is_not_sent_and_a_taken_one_is_not_withdrawn(db, reports):
    server = Server()
    post = postman(db, server, reports)
    assert deliver(post, mail("reminder:n2:1")) == ["sent"]
    answer = handlers.withdraw(db, ["reminder:n1:1", "reminder:n2:1"], "me",
                               datetime.now(timezone.utc))
    assert answer == {"withdrawn": ["reminder:n1:1"], "taken": ["reminder:n2:1"]}
    assert deliver(post, mail("reminder:n1:1")) == [None]
    assert [e for e in server.accepted if "n1" in e] == []
    # asked again (a retried cancellation): the same answer
    assert handlers.withdraw(db, ["reminder:n1:1"], "me", datetime.now(timezone.utc)) == {
        "withdrawn": ["reminder:n1:1"], "taken": []}


def test_withdraw_rejects_what_is_not_a_list_of_keys(db):
    from bus.errors import ValidationError
    for bad in ("reminder:n1:1", [{"$ne": None}], None):
        with pytest.raises(ValidationError):
            handlers.withdraw(db, bad, "me", datetime.now(timezone.utc))


def test_malformed_items_of_a_batch_are_dropped_and_the_rest_delivered(db, reports):
    data = {"events": {"e1": {"id": "e1"}}, "reminders": [
        "nonsense", {"send_key": "reminder:n9:1"},
        {"send_key": "reminder:n1:1", "notification": {"id": "n1"}, "event_id": "e1",
         "attempt": "x"},
        {"send_key": "reminder:n2:1", "notification": {"id": "n2"}, "event_id": "e1"}]}
    mails = handlers.reminders(data, smtp.DEFAULT_SENDER)
    assert [m.send_key for m in mails] == ["reminder:n2:1"]
    # its email cannot be written (the event is missing its fields): failed, with why
    assert deliver(postman(db, Server(), reports), *mails) == ["failed"]
    assert reports[0]["reason"].startswith("cannot write the email")


def test_the_writes_of_concurrent_sends_are_grouped(db, reports):
    calls = []

    class Counting(Postman):
        def _write_marks(self, mails):
            calls.append(len(mails))
            return super()._write_marks(mails)

    server = Server(delay=0.01)
    post = Counting(db, reports, server, holder="me")
    deliver(post, *[mail(f"reminder:n{i}:1") for i in range(40)])
    assert len(server.accepted) == 40
    assert sum(calls) == 40 and len(calls) < 40  # fewer round trips than mails


def test_an_answer_a_dead_holder_had_only_in_its_journal_is_not_called_interrupted(
        db, reports, tmp_path):
    server = Server()
    post = Postman(db, reports, server, holder="me", journals=tmp_path)
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=31)
    storage.take(db, [{"_id": "reminder:n1:1", "kind": "reminder", "holder": "dead",
                       "at": long_ago}])
    dead = storage.Journal(tmp_path, "dead")
    dead.take("reminder:n1:1")
    dead.data("reminder:n1:1")
    dead.outcome({"_id": "reminder:n1:1", "status": "sent", "at": long_ago, "reason": None,
                  "notification_id": "n1", "kind": "reminder"})
    dead.file.close()  # killed: its lock is gone, its file stays
    alive = storage.Journal(tmp_path, "alive")
    alive.outcome({"_id": "reminder:n2:1", "status": "sent", "at": long_ago, "reason": None,
                   "notification_id": "n2", "kind": "reminder"})
    assert deliver(post, mail()) == ["sent"]  # recorded from the journal, not resent
    assert server.accepted == []
    assert reports.by_status() == [("reminder:n1:1", "sent")]
    # a live process's journal is its own business
    assert storage.find_outcomes(db, ["reminder:n2:1"]) == {}
    assert sorted(p.name for p in tmp_path.glob("*.journal")) == ["alive.journal",
                                                                  "me.journal"]


def test_a_journal_is_emptied_once_its_outcomes_are_recorded(db, reports, tmp_path):
    post = Postman(db, reports, Server(), holder="me", journals=tmp_path)
    assert deliver(post, *[mail(f"reminder:n{i}:1") for i in range(5)]) == ["sent"] * 5
    assert (tmp_path / "me.journal").read_text() == ""
    post.stop()
    assert not (tmp_path / "me.journal").exists()


def test_a_key_a_dead_holder_took_but_never_handed_over_is_sent_after_all(db, reports,
                                                                         tmp_path):
    long_ago = datetime.now(timezone.utc) - timedelta(seconds=31)
    dead = storage.Journal(tmp_path, "dead")
    for key in ("reminder:n1:1", "reminder:n2:1"):
        dead.take(key)
        storage.take(db, [{"_id": key, "kind": "reminder", "holder": "dead", "at": long_ago}])
    dead.data("reminder:n2:1")  # this one was killed inside DATA
    dead.file.close()
    server = Server()
    post = Postman(db, reports, server, holder="me", journals=tmp_path)
    assert deliver(post, mail("reminder:n1:1"), mail("reminder:n2:1")) == ["sent", "failed"]
    assert server.accepted == ["mail for reminder:n1:1"]
    [interrupted] = [r for r in reports if r["status"] == "failed"]
    assert interrupted["send_key"] == "reminder:n2:1"
    assert interrupted["reason"].startswith("interrupted while handing the mail")
