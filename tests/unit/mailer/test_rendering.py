"""What a reminder, a cancellation notice and a welcome email say."""
import email
from datetime import datetime, timezone
from email import policy

import pytest

from services.mailer import smtp

EVENT = {
    "id": "e1", "title": "Jazz <night> & more", "description": "Live music; bring friends, too",
    "topics": ["jazz"], "starts_at": "2026-03-29T01:30:00Z", "ends_at": None,
    "timezone": "Europe/Berlin",
    "place": {"name": "Blue Note", "address": "Main St 1", "lat": 52.5, "lng": 13.4},
    "organizer": None, "status": "scheduled", "version": 3,
    "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
}
NOTIFICATION = {
    "id": "n1", "event_id": "e1", "email": "ann@example.com", "subject": "Reminder: Jazz",
    "message": "Buy tickets\nat the door", "remind_at": "2026-03-29T00:30:00Z",
    "before_minutes": 60, "status": "scheduled", "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z", "sent_at": None, "failure_reason": None,
}


def parsed(message):
    """The message as a receiving client sees it (strict: any defect raises)."""
    return email.message_from_bytes(message.data, policy=policy.strict)


def parts(message):
    received = parsed(message)
    # a client shows the canonical CRLF line breaks as line breaks
    text = received.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = received.get_body(("html",)).get_content().replace("\r\n", "\n")
    attachments = {p.get_filename(): p for p in received.iter_attachments()}
    return received, text, html, attachments


def test_start_is_shown_in_the_events_time_zone_on_both_sides_of_a_dst_change():
    # Berlin springs forward on 29 March 2026 at 01:00 UTC
    assert smtp.local_start({**EVENT, "starts_at": "2026-03-29T00:30:00Z"}) == (
        "Sunday 29 March 2026, 01:30 CET (Europe/Berlin, UTC+01:00)")
    assert smtp.local_start(EVENT) == (
        "Sunday 29 March 2026, 03:30 CEST (Europe/Berlin, UTC+02:00)")
    assert smtp.local_start({**EVENT, "timezone": "America/New_York"}) == (
        "Saturday 28 March 2026, 21:30 EDT (America/New_York, UTC-04:00)")


def test_reminder_has_title_local_start_place_and_message_in_text_and_html():
    received, text, html, attachments = parts(
        smtp.reminder_email(NOTIFICATION, EVENT, "reminder:n1:1"))
    assert received["To"] == "ann@example.com"
    assert received["Subject"] == "Reminder: Jazz"
    for body in (text, html):
        assert "03:30 CEST" in body
        assert "Blue Note, Main St 1" in body
        assert "Buy tickets\nat the door" in body
    assert "Jazz <night> & more" in text
    assert "Jazz &lt;night&gt; &amp; more" in html and "<night>" not in html
    assert list(attachments) == ["event.ics"]


def test_reminder_carries_a_calendar_invitation():
    *_, attachments = parts(smtp.reminder_email(NOTIFICATION, EVENT, "reminder:n1:1"))
    ics = attachments["event.ics"]
    assert ics.get_content_type() == "text/calendar"
    lines = ics.get_content().replace("\r\n ", "").splitlines()
    assert "DTSTART:20260329T013000Z" in lines
    assert "DTEND:20260329T023000Z" in lines  # no end given: an hour
    assert "SUMMARY:Jazz <night> & more" in lines
    assert "DESCRIPTION:Live music\\; bring friends\\, too" in lines
    assert "LOCATION:Blue Note\\, Main St 1" in lines
    assert "UID:e1@eventpost" in lines
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR"


def test_long_calendar_lines_are_folded_without_splitting_characters():
    long_title = "Café " * 40
    ics = smtp.calendar({**EVENT, "title": long_title})
    assert all(len(line.encode()) <= 75 for line in ics.split("\r\n"))
    assert f"SUMMARY:{long_title}" in ics.replace("\r\n ", "")


def test_message_id_depends_only_on_the_send_key():
    first = smtp.reminder_email(NOTIFICATION, EVENT, "reminder:n1:1")
    again = smtp.reminder_email({**NOTIFICATION, "message": None}, EVENT, "reminder:n1:1")
    other = smtp.reminder_email(NOTIFICATION, EVENT, "reminder:n1:2")
    first, again, other = parsed(first), parsed(again), parsed(other)
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert first[smtp.SEND_KEY_HEADER] == "reminder:n1:1"


def test_reminder_without_message_or_place():
    _, text, html, _ = parts(smtp.reminder_email(
        {**NOTIFICATION, "message": None}, {**EVENT, "place": None}, "k"))
    assert "no place given" in text and "None" not in text and "None" not in html


def test_cancellation_notice_lists_the_cancelled_reminders():
    received, text, html, attachments = parts(smtp.cancelled_email(
        "ann@example.com", EVENT, [NOTIFICATION], "cancel:e1:4:u1"))
    assert received["Subject"] == "Cancelled: Jazz <night> & more"
    assert "cancelled" in text and "03:30 CEST" in text
    assert "Reminder: Jazz (due 2026-03-29T00:30:00Z)" in text
    assert "<li>Reminder: Jazz" in html
    assert attachments == {}


def test_a_series_cancellation_is_one_notice_that_says_so():
    received, text, html, _ = parts(smtp.cancelled_email(
        "ann@example.com", EVENT, [NOTIFICATION, NOTIFICATION], "cancel-series:s1:c1:u1",
        series={"id": "s1", "occurrences": 4}))
    assert received["Subject"] == "Cancelled: Jazz <night> & more"
    assert "recurring event" in text and "4 occurrences, from the one below on" in text
    assert "First to start:  " in text and "03:30 CEST" in text
    assert text.count("(due ") == 2 and html.count("<li>") == 2


def test_welcome_email():
    user = {"id": "u1", "username": "ann", "email": "ann@example.com"}
    received, text, html, _ = parts(smtp.welcome_email(user, "welcome:u1"))
    assert received["To"] == "ann@example.com"
    assert "Welcome to EventPost, ann!" in text and "ann@example.com" in html


def test_every_email_has_the_headers_rfc_5322_requires_and_valid_mime():
    now = datetime(2026, 12, 1, 12, 0, 5, tzinfo=timezone.utc)
    for message in (smtp.reminder_email(NOTIFICATION, EVENT, "reminder:n1:1", now=now),
                    smtp.cancelled_email("ann@example.com", EVENT, [NOTIFICATION], "c", now=now),
                    smtp.welcome_email({"username": "ann", "email": "ann@example.com"}, "w",
                                       now=now)):
        raw = message.data
        assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
        assert max(len(line) for line in raw.split(b"\r\n")) <= 78
        received = parsed(message)
        assert received["Date"] == "Tue, 01 Dec 2026 12:00:05 +0000"
        assert received["Date"].datetime == now
        assert received["From"] == "EventPost <no-reply@eventpost.localhost>"
        assert received["Message-ID"].startswith("<") and received["MIME-Version"] == "1.0"
        assert all(not part.defects for part in received.walk())
        assert message.sender == "no-reply@eventpost.localhost"
        assert message.recipients == ["ann@example.com"]


def test_line_breaks_in_a_subject_or_title_cannot_inject_headers():
    notification = {**NOTIFICATION, "subject": "Doors\r\nBcc: victim@example.org"}
    event = {**EVENT, "title": "Jazz\nnight"}
    received = parsed(smtp.reminder_email(notification, event, "reminder:n1:1"))
    assert received["Subject"] == "Doors  Bcc: victim@example.org"
    assert received["Bcc"] is None
    notice = parsed(smtp.cancelled_email("ann@example.com", event, [notification], "c"))
    assert notice["Subject"] == "Cancelled: Jazz night"
    assert notice["Bcc"] is None


def test_non_ascii_subject_sender_and_long_subject_are_encoded():
    notification = {**NOTIFICATION, "subject": "Erinnerung: Café Übermut " + "sehr " * 30}
    message = smtp.reminder_email(notification, EVENT, "reminder:n1:1",
                                  sender="Événements <events@example.org>")
    received = parsed(message)
    assert received["Subject"] == notification["subject"].strip()
    assert received["From"] == "Événements <events@example.org>"
    assert message.data.isascii()  # RFC 2047 words: any server takes it
    assert message.sender == "events@example.org"


def test_an_email_that_cannot_be_encoded_is_a_build_error_with_the_reason():
    with pytest.raises(smtp.BuildError) as error:
        smtp.reminder_email({**NOTIFICATION, "message": "bad \udc80 text"}, EVENT, "k")
    assert "cannot write the email" in str(error.value)
    with pytest.raises(smtp.BuildError):
        smtp.reminder_email(NOTIFICATION, {"id": "e1"}, "k")  # an event without its fields


SAVED = {"id": "s1", "name": "Jazz <Berlin>", "query": {"topic": ["jazz"]},
         "frequency": "daily", "email": "ann@example.com", "created_at": "2026-01-01T00:00:00Z"}


def test_an_alert_digest_lists_its_events_and_its_stop_link_is_the_unsubscribe():
    other = {**EVENT, "id": "e2", "title": "Brunch", "place": None}
    stop = "https://eventpost.example/links/abc"
    message = smtp.alert_email("ann@example.com", SAVED, [EVENT, other], "digest:s1:1", stop,
                               "https://eventpost.example")
    received, text, html, attachments = parts(message)
    assert received["Subject"] == "2 new events: Jazz <Berlin>"
    assert received["List-Unsubscribe"] == f"<{stop}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "Jazz <night> & more" in text and "Brunch" in text and "no place given" in text
    assert f"Stop this saved search: {stop}" in text
    assert "https://eventpost.example/#/events/e2" in text
    assert "Jazz &lt;night&gt; &amp; more" in html and "<night>" not in html
    assert not attachments


def test_an_instant_alert_names_its_event_and_without_a_secret_has_no_unsubscribe():
    message = smtp.alert_email("ann@example.com", {**SAVED, "frequency": "instant"}, [EVENT],
                               "alert:s1:e1", "https://e.example/#/account", "https://e.example",
                               signed=False)
    received, text, _, _ = parts(message)
    assert received["Subject"] == "New event: Jazz <night> & more"
    assert received["List-Unsubscribe"] is None


def test_a_cancellation_notice_carries_its_stop_link_in_both_bodies_and_as_unsubscribe():
    stop = "https://eventpost.example/links/abc"
    received, text, html, _ = parts(smtp.cancelled_email(
        "ann@example.com", EVENT, [NOTIFICATION], "cancel:e1:4:u1", stop_url=stop,
        signed=True))
    assert received["List-Unsubscribe"] == f"<{stop}>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert f"Stop emails about cancelled events: {stop}" in text
    assert f'<a href="{stop}">Stop emails about cancelled events</a>' in html
    # a notice from before notices named their user: the account page, no unsubscribe
    received, text, _, _ = parts(smtp.cancelled_email(
        "ann@example.com", EVENT, [NOTIFICATION], "c", stop_url="https://e.example/#/account"))
    assert received["List-Unsubscribe"] is None and received["List-Unsubscribe-Post"] is None
    assert "Stop emails about cancelled events: https://e.example/#/account" in text
