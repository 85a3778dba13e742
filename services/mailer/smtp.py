"""Writing the emails (templates/, plain text + HTML, an .ics for reminders) and
sending them over SMTP, telling transient failures from permanent ones."""
import hashlib
import html
import smtplib
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import getaddresses
from pathlib import Path
from string import Template
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_SENDER = "EventPost <no-reply@eventpost.localhost>"
SEND_KEY_HEADER = "X-EventPost-Send-Key"


class TransientFailure(Exception):
    """Worth trying again later: no connection, a timeout, a 4xx reply."""


class PermanentFailure(Exception):
    """The server refused for good (5xx): the reason is reported to the user."""


class UncertainDelivery(Exception):
    """The connection broke after the mail was handed over: it may have been delivered."""


# rendering

def _template(name):
    return Template((TEMPLATES / name).read_text())


def _time(text):
    return datetime.fromisoformat(text)


def local_start(event):
    """The event's start in its own time zone, e.g.
    ``Saturday 5 December 2026, 20:30 CET (Europe/Berlin, UTC+01:00)``."""
    name = event.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        zone, name = ZoneInfo("UTC"), "UTC"
    start = _time(event["starts_at"]).astimezone(zone)
    offset = start.strftime("%z")
    return (f"{start:%A} {start.day} {start:%B %Y}, {start:%H:%M} {start.tzname()} "
            f"({name}, UTC{offset[:3]}:{offset[3:]})")


def place_line(event):
    place = event.get("place")
    if not place:
        return "no place given"
    return ", ".join(part for part in (place.get("name"), place.get("address")) if part)


def _both(name, values, html_values=None):
    """The text and HTML bodies of template ``name``; HTML gets escaped values."""
    escaped = {key: html.escape(str(value)) for key, value in values.items()}
    escaped.update(html_values or {})
    return (_template(f"{name}.txt").substitute(values),
            _template(f"{name}.html").substitute(escaped))


def _message(sender, to, subject, send_key, text, html_body):
    email = EmailMessage()
    email["From"] = sender
    email["To"] = to
    email["Subject"] = subject
    # The same send key always gives the same Message-ID, so in the one case where a
    # mail could go out twice (see service.py) the receiving client can tell.
    email["Message-ID"] = f"<{hashlib.sha256(send_key.encode()).hexdigest()[:40]}@eventpost>"
    email[SEND_KEY_HEADER] = send_key
    email.set_content(text)
    email.add_alternative(html_body, subtype="html")
    return email


def reminder_email(notification, event, send_key, sender=DEFAULT_SENDER, now=None):
    message = notification.get("message")
    values = {
        "title": event["title"],
        "starts": local_start(event),
        "place": place_line(event),
        "email": notification["email"],
        "message_block": f"\n{message}\n" if message else "",
    }
    html_message = (f'<p style="white-space: pre-wrap">{html.escape(message)}</p>'
                    if message else "")
    text, html_body = _both("reminder", values, {"message_block": html_message})
    email = _message(sender, notification["email"], notification["subject"], send_key,
                     text, html_body)
    email.add_attachment(calendar(event, now), subtype="calendar",
                         filename="event.ics", params={"method": "PUBLISH"})
    return email


def cancelled_email(to, event, notifications, send_key, sender=DEFAULT_SENDER):
    lines = [f"- {n['subject']} (due {n['remind_at']})" for n in notifications]
    items = "".join(f"<li>{html.escape(n['subject'])} (due {html.escape(n['remind_at'])})</li>"
                    for n in notifications)
    values = {"title": event["title"], "starts": local_start(event), "place": place_line(event),
              "reminders": "\n".join(lines)}
    text, html_body = _both("cancelled", values, {"reminders": items})
    return _message(sender, to, f"Cancelled: {event['title']}", send_key, text, html_body)


def welcome_email(user, send_key, sender=DEFAULT_SENDER):
    values = {"username": user["username"], "email": user["email"]}
    text, html_body = _both("welcome", values)
    return _message(sender, user["email"], "Welcome to EventPost", send_key, text, html_body)


# .ics (RFC 5545)

def _ics_text(value):
    return (str(value).replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n"))


def _ics_time(moment):
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _fold(line):
    """Lines longer than 75 octets continue on the next line after a space."""
    data, parts = line.encode(), []
    while len(data) > 75:
        cut = 75 if not parts else 74
        while cut and (data[cut] & 0xC0) == 0x80:  # do not split a UTF-8 character
            cut -= 1
        parts.append(data[:cut])
        data = data[cut:]
    parts.append(data)
    return b"\r\n ".join(parts).decode()


def calendar(event, now=None):
    start = _time(event["starts_at"])
    end = _time(event["ends_at"]) if event.get("ends_at") else start + timedelta(hours=1)
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//EventPost//Reminders//EN",
        "METHOD:PUBLISH", "BEGIN:VEVENT",
        f"UID:{event['id']}@eventpost",
        f"SEQUENCE:{int(event.get('version') or 1)}",
        f"DTSTAMP:{_ics_time(now or datetime.now(timezone.utc))}",
        f"DTSTART:{_ics_time(start)}",
        f"DTEND:{_ics_time(end)}",
        f"SUMMARY:{_ics_text(event['title'])}",
    ]
    if event.get("description"):
        lines.append(f"DESCRIPTION:{_ics_text(event['description'])}")
    place = event.get("place")
    if place:
        lines.append(f"LOCATION:{_ics_text(place_line(event))}")
        lines.append(f"GEO:{float(place['lat']):.6f};{float(place['lng']):.6f}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join(_fold(line) for line in lines) + "\r\n"


# sending

def send(email, host, port, timeout=10.0, committing=lambda: None):
    """Hand ``email`` to the SMTP server; TransientFailure or PermanentFailure if not.

    ``committing()`` is called once the server has accepted sender and recipient,
    right before the DATA command: from then on the server may have the mail even if
    we never hear its answer. A failure after that point without an SMTP reply (the
    connection dropped) is an UncertainDelivery."""
    committed = False
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as server:
            server.ehlo_or_helo_if_needed()
            sender = getaddresses([email["From"]])[0][1]
            recipients = [address for _, address in getaddresses([email["To"]])]
            code, reply = server.mail(sender)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, sender)
            for recipient in recipients:
                code, reply = server.rcpt(recipient)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            committing()
            committed = True
            code, reply = server.data(email.as_bytes(policy=SMTP))
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
    except smtplib.SMTPRecipientsRefused as error:
        code, reply = next(iter(error.recipients.values()))
        raise _by_code(code, reply) from error
    except smtplib.SMTPResponseException as error:
        raise _by_code(error.smtp_code, error.smtp_error) from error
    except (smtplib.SMTPException, OSError) as error:  # refused, reset, timed out
        reason = f"{type(error).__name__}: {error}"
        raise (UncertainDelivery if committed else TransientFailure)(reason) from error


def _by_code(code, reply):
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = f"{code} {text}".strip()
    return PermanentFailure(reason) if 500 <= int(code) < 600 else TransientFailure(reason)
