"""The mailer in a real container: messages in over RabbitMQ, mail out to a real SMTP
server, outcomes published for the notifications service."""
import time
import uuid

import pytest

from nameko.standalone.events import event_dispatcher

from bus.messages import new_message, queue_name
from services.mailer import smtp
from services.mailer.service import MailerService
from tests.integration.notifications.support import (
    Inbox,
    event_resource,
    publish,
    user_resource,
)
from tests.support.queues import take, wait_until_idle

pytestmark = pytest.mark.integration


@pytest.fixture
def config(smtp_config):
    return smtp_config


@pytest.fixture
def mailer(container_factory, config):
    container = container_factory(MailerService, config)
    container.start()
    return container


def outcomes(config, status, count=1, timeout=15):
    """The next ``count`` outcomes with ``status`` the mailer reported, from the
    notifications service's queue of delivery reports (one report may carry several:
    the mailer groups what is recorded within REPORT_LINGER_SECONDS)."""
    found, deadline = [], time.monotonic() + timeout
    queue = queue_name("mailer", "delivery_report", "notifications")
    while len(found) < count and time.monotonic() < deadline:
        for message in take(config, queue, 1, timeout=max(0.1, deadline - time.monotonic())):
            found += [o for o in message["data"]["outcomes"] if o["status"] == status]
    return found[:count]


def reminder_of(event, email, status="scheduled"):
    """A reminder resource (API.md) for ``event``."""
    return {
        "id": uuid.uuid4().hex, "event_id": event["id"], "email": email,
        "subject": "Reminder: Jazz night", "message": "Bring earplugs",
        "remind_at": event["created_at"], "before_minutes": None, "status": status,
        "created_at": event["created_at"], "updated_at": event["created_at"],
        "sent_at": None, "failure_reason": None,
    }


def reminder_due(config, send_key=None, email="ann@example.com"):
    event = event_resource()
    notification = reminder_of(event, email)
    send_key = send_key or f"reminder:{notification['id']}:1"
    message = publish(config, "notifications", "reminder_due", "reminders", 1,
                      reminders=[{"send_key": send_key, "notification": notification,
                                  "event_id": event["id"], "attempt": 1}],
                      events={event["id"]: event})
    return notification, message


def test_welcome_email_on_registration_once(mailer, config, inbox):
    ann = user_resource("ann")
    for _ in range(2):  # a redelivered registration does not welcome twice
        publish(config, "users", "user_registered", ann["id"], 1, user=ann)
    [mail] = inbox.wait_for(1)
    assert mail["To"] == "ann@example.com"
    assert "Welcome to EventPost, ann!" in mail.get_body(("plain",)).get_content()
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == f"welcome:{ann['id']}" and sent["notification_id"] is None
    wait_until_idle(config, [mailer])
    assert len(inbox.received) == 1


def test_reminder_due_twice_is_mailed_once_with_a_calendar(mailer, config, inbox):
    notification, _ = reminder_due(config, send_key="reminder:n-twice:1")
    reminder_due(config, send_key="reminder:n-twice:1")
    [mail] = inbox.wait_for(1)
    assert mail["Subject"] == "Reminder: Jazz night"
    assert "Bring earplugs" in mail.get_body(("plain",)).get_content()
    [ics] = list(mail.iter_attachments())
    assert ics.get_content_type() == "text/calendar"
    assert "SUMMARY:Jazz night" in ics.get_content()
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == "reminder:n-twice:1"
    assert sent["notification_id"] == notification["id"]
    wait_until_idle(config, [mailer])
    assert len(inbox.received) == 1


def cancellation_notice(config, email, user_id):
    """An event_cancelled_notice as the notifications service publishes it; with
    ``user_id`` None, as it did before notices named their user (no `user_id` at all)."""
    event = event_resource(status="cancelled", version=2)
    message = new_message("notifications", "event_cancelled_notice", event["id"], 2,
                          send_key=f"cancel:{event['id']}:2:{user_id or 'before'}",
                          email=email, user_id=user_id or "", event=event,
                          notifications=[reminder_of(event, email, "cancelled")])
    if user_id is None:
        del message["data"]["user_id"]
    event_dispatcher(config)("notifications", "event_cancelled_notice", message)
    return message


def test_a_cancellation_notice_from_before_it_named_its_user_is_mailed_without_a_stop_link(
        mailer, config, inbox):
    old = cancellation_notice(config, "ann@example.com", user_id=None)

    [mail] = inbox.wait_for(1)
    assert (mail["To"], mail["Subject"]) == ("ann@example.com", "Cancelled: Jazz night")
    assert mail["List-Unsubscribe"] is None and mail["List-Unsubscribe-Post"] is None
    for body in (mail.get_body(("plain",)), mail.get_body(("html",))):
        text = body.get_content()
        assert "The event you set reminders for has been cancelled." in text
        assert "http://127.0.0.1:8000/#/account" in text  # stopped by hand there
        assert "/links/" not in text
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == old["data"]["send_key"]

    # nothing stuck or parked: the next notice, naming its user, has its one-click link
    new = cancellation_notice(config, "bob@example.com", user_id=uuid.uuid4().hex)
    mail = inbox.wait_for(1, to="bob@example.com")[0]
    assert mail["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:8000/links/")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == new["data"]["send_key"]
    wait_until_idle(config, [mailer])
    assert len(inbox.messages(to="ann@example.com")) == 1


def test_an_email_that_cannot_be_written_fails_at_once_with_the_reason(mailer, config, inbox):
    notification, message = reminder_due(config)
    broken = message["data"]["reminders"][0]
    publish(config, "notifications", "reminder_due", "reminders", 1,
            reminders=[{**broken, "send_key": "reminder:broken:1"}],
            events={broken["event_id"]: {"id": broken["event_id"]}})  # no start, no title
    failed = outcomes(config, "failed")
    assert [f["send_key"] for f in failed] == ["reminder:broken:1"]
    assert failed[0]["reason"].startswith("cannot write the email")
    inbox.wait_for(1)  # the good one still goes out
    assert [m[smtp.SEND_KEY_HEADER] for m in inbox.messages()] == [broken["send_key"]]


def test_permanent_refusal_reports_email_failed(mailer, config, inbox):
    inbox.replies = ["554 5.7.1 Rejected"]
    notification, _ = reminder_due(config)
    [failed] = outcomes(config, "failed")
    assert failed["notification_id"] == notification["id"]
    assert failed["reason"].startswith("554")
    assert inbox.received == []


def test_a_temporary_refusal_is_reported_deferred_and_the_next_hand_over_sent_once(
        mailer, config, inbox):
    inbox.replies = ["451 4.3.0 Try later"]
    notification, message = reminder_due(config)
    [deferred] = outcomes(config, "deferred")
    assert deferred["notification_id"] == notification["id"]
    assert deferred["reason"].startswith("451")
    assert inbox.received == []
    # what the notifications service does after the backoff: the same key again
    again = message["data"]["reminders"][0]
    publish(config, "notifications", "reminder_due", "reminders", 2,
            reminders=[{**again, "attempt": 2}], events=message["data"]["events"])
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == again["send_key"]
    wait_until_idle(config, [mailer])
    assert len(inbox.messages()) == 1


def test_temporary_refusals_of_a_welcome_email_are_retried_then_sent_once(mailer, config,
                                                                         inbox):
    inbox.replies = ["451 4.3.0 Try later", "421 4.3.2 Busy"]
    ann = user_resource("ann")
    publish(config, "users", "user_registered", ann["id"], 1, user=ann)
    [sent] = outcomes(config, "sent")
    assert sent["send_key"] == f"welcome:{ann['id']}"
    assert inbox.replies == [] and len(inbox.messages()) == 1


@pytest.fixture
def pooled(container_factory, config):
    config = {**config, "SMTP_POOL_SIZE": 3}
    container_factory(MailerService, config).start()
    return config


def test_one_connection_carries_many_mails(pooled, inbox):
    config = pooled
    made = [reminder_due(config)[0] for _ in range(30)]
    inbox.wait_for(30)
    sent = outcomes(config, "sent", count=30)
    assert sorted(o["notification_id"] for o in sent) == sorted(n["id"] for n in made)
    # SMTP_POOL_SIZE connections at most, not one per mail
    assert 1 <= len(inbox.sessions) <= config["SMTP_POOL_SIZE"], inbox.sessions


def test_an_smtp_server_down_for_a_while(container_factory, service_config):
    inbox = Inbox()  # its port is chosen, but nothing listens yet: connection refused
    config = {**service_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": inbox.port,
              "HANDLER_MAX_ATTEMPTS": 6}  # backoff 0.2 s, 0.4 s, ... 3.2 s
    container_factory(MailerService, config).start()
    ann = user_resource("ann")
    publish(config, "users", "user_registered", ann["id"], 1, user=ann)
    [deferred] = outcomes(config, "deferred")  # tried while nothing listened
    assert deferred["send_key"] == f"welcome:{ann['id']}"
    inbox.start()
    try:
        [sent] = outcomes(config, "sent", timeout=20)
        assert sent["send_key"] == f"welcome:{ann['id']}"
        assert len(inbox.messages()) == 1
    finally:
        inbox.stop()
