"""The mailer in a real container: messages in over RabbitMQ, mail out to a real SMTP
server, outcomes published for the notifications service."""
import time
import uuid

import pytest

from bus.messages import queue_name
from services.mailer.service import MailerService
from tests.integration.notifications.support import (
    Inbox,
    event_resource,
    publish,
    user_resource,
)
from tests.support.queues import take

pytestmark = pytest.mark.integration


@pytest.fixture
def config(smtp_config):
    return smtp_config


@pytest.fixture
def mailer(container_factory, config):
    container = container_factory(MailerService, config)
    container.start()
    return container


def outcomes(config, event_type, count=1, timeout=15):
    """The next ``count`` outcome messages, from the notifications service's queue."""
    messages = take(config, queue_name("mailer", event_type, "notifications"), count, timeout)
    return [message["data"] for message in messages]


def reminder_due(config, send_key=None, email="ann@example.com"):
    event = event_resource()
    notification = {
        "id": uuid.uuid4().hex, "event_id": event["id"], "email": email,
        "subject": "Reminder: Jazz night", "message": "Bring earplugs",
        "remind_at": event["created_at"], "before_minutes": None, "status": "scheduled",
        "created_at": event["created_at"], "updated_at": event["created_at"],
        "sent_at": None, "failure_reason": None,
    }
    send_key = send_key or f"reminder:{notification['id']}:1"
    message = publish(config, "notifications", "reminder_due", notification["id"], 1,
                      send_key=send_key, notification=notification, event=event)
    return notification, message


def test_welcome_email_on_registration_once(mailer, config, inbox):
    ann = user_resource("ann")
    for _ in range(2):  # a redelivered registration does not welcome twice
        publish(config, "users", "user_registered", ann["id"], 1, user=ann)
    [mail] = inbox.wait_for(1)
    assert mail["To"] == "ann@example.com"
    assert "Welcome to EventPost, ann!" in mail.get_body(("plain",)).get_content()
    [sent] = outcomes(config, "email_sent")
    assert sent["send_key"] == f"welcome:{ann['id']}" and sent["notification_id"] is None
    time.sleep(1)
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
    [sent] = outcomes(config, "email_sent")
    assert sent["send_key"] == "reminder:n-twice:1"
    assert sent["notification_id"] == notification["id"]
    time.sleep(1)
    assert len(inbox.received) == 1


def test_permanent_refusal_reports_email_failed(mailer, config, inbox):
    inbox.replies = ["554 5.7.1 Rejected"]
    notification, _ = reminder_due(config)
    [failed] = outcomes(config, "email_failed")
    assert failed["notification_id"] == notification["id"]
    assert failed["reason"].startswith("554")
    assert inbox.received == []


def test_temporary_refusals_are_retried_then_sent_once(mailer, config, inbox):
    inbox.replies = ["451 4.3.0 Try later", "421 4.3.2 Busy"]
    notification, _ = reminder_due(config)
    [sent] = outcomes(config, "email_sent")
    assert sent["notification_id"] == notification["id"]
    assert inbox.replies == [] and len(inbox.messages()) == 1


def test_an_smtp_server_down_for_a_while(container_factory, service_config):
    inbox = Inbox()  # its port is chosen, but nothing listens yet: connection refused
    config = {**service_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": inbox.port,
              "HANDLER_MAX_ATTEMPTS": 6}  # backoff 0.2 s, 0.4 s, ... 3.2 s
    container_factory(MailerService, config).start()
    notification, _ = reminder_due(config)
    time.sleep(1.5)
    inbox.start()
    try:
        [sent] = outcomes(config, "email_sent", timeout=20)
        assert sent["notification_id"] == notification["id"]
        assert len(inbox.messages()) == 1
    finally:
        inbox.stop()
