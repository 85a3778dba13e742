"""Writing the emails (templates/, plain text + HTML, an .ics for reminders) and
sending them over SMTP on kept-open connections, telling transient failures from
permanent ones.

The MIME is written here directly rather than with ``email.message.EmailMessage``:
its header machinery cost ~4 ms per reminder, more than everything else the mailer
does for it. The structure is fixed, every body part is UTF-8 in base64 (any text,
any line length, 7-bit safe), and header values are single lines (line breaks and
other control characters become spaces, so a title or subject can never inject a
header). tests/unit/mailer checks the result with the standard library's parser.
"""
import base64
import functools
import hashlib
import html
import smtplib
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr
from pathlib import Path
from string import Template
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventlet.semaphore import Semaphore

from bus import ical, links

TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_SENDER = "EventPost <no-reply@eventpost.localhost>"
SEND_KEY_HEADER = "X-EventPost-Send-Key"
CONTROL = {code: " " for code in (*range(0, 32), 127)}
CRLF = "\r\n"


class BuildError(Exception):
    """The email cannot be written (e.g. text that cannot be encoded): it never will be."""


class TransientFailure(Exception):
    """Worth trying again later: no connection, a timeout, a 4xx reply."""


class PermanentFailure(Exception):
    """The server refused for good (5xx): the reason is reported to the user."""


class UncertainDelivery(Exception):
    """The connection broke after the mail was handed over: it may have been delivered."""


@dataclass
class Email:
    """A written email: the SMTP envelope and the message as it goes over the wire."""

    sender: str
    recipients: list
    data: bytes
    utf8_addresses: bool = False  # a non-ASCII address: the server must offer SMTPUTF8


# rendering

@functools.lru_cache(maxsize=None)
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


def one_line(value):
    """A header value on one line: control characters (CR, LF, ...) become spaces."""
    return str(value).translate(CONTROL).strip()


def _header(name, value):
    value = one_line(value)
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}\r\n"
    # RFC 2047 encoded words for non-ASCII text, folded lines for long text
    charset = "us-ascii" if value.isascii() else "utf-8"
    return f"{name}: {Header(value, charset, header_name=name).encode(linesep=CRLF)}\r\n"


@functools.lru_cache(maxsize=64)
def _sender_header(sender):
    name, address = parseaddr(one_line(sender))
    return formataddr((name, address), charset="utf-8"), address


def _base64(data):
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _text_part(subtype, text, params="", headers=""):
    """A text part in its canonical form (CRLF line breaks), UTF-8 in base64."""
    body = text.replace("\r\n", "\n").replace("\n", CRLF).encode("utf-8")
    return (f'Content-Type: text/{subtype}; charset="utf-8"{params}\r\n{headers}'
            "Content-Transfer-Encoding: base64\r\n\r\n").encode() + _base64(body)


def _multipart(subtype, boundary, parts):
    mark = f"--{boundary}".encode()
    body = b"".join(mark + b"\r\n" + part for part in parts)
    return (f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
            + body + mark + b"--\r\n")


def _message(sender, to, subject, send_key, text, html_body, attachment=None, now=None,
             extra_headers=""):
    """The whole message: RFC 5322 headers (Date, From, To, Subject, Message-ID) and
    a multipart body (text + HTML, and the calendar invitation if there is one)."""
    from_header, sender_address = _sender_header(sender)
    to = one_line(to)
    digest = hashlib.sha256(send_key.encode()).hexdigest()
    headers = (
        f"Date: {format_datetime(now or datetime.now(timezone.utc))}\r\n"
        f"From: {from_header}\r\n"
        f"To: {to}\r\n"
        + _header("Subject", subject)
        # The same send key always gives the same Message-ID, so in the one case where
        # a mail could go out twice (handlers.py) the receiving client can tell.
        + f"Message-ID: <{digest[:40]}@eventpost>\r\n"
        + _header(SEND_KEY_HEADER, send_key)
        + extra_headers
        + "MIME-Version: 1.0\r\n"
    )
    body = _multipart("alternative", f"==alt-{digest[:16]}==",
                      [_text_part("plain", text), _text_part("html", html_body)])
    if attachment is not None:
        filename, content, params = attachment
        disposition = f'Content-Disposition: attachment; filename="{filename}"\r\n'
        body = _multipart("mixed", f"==mix-{digest[:16]}==",
                          [body, _text_part("calendar", content, params, disposition)])
    return Email(sender=sender_address, recipients=[address for _, address in
                                                    getaddresses([to])],
                 data=headers.encode("utf-8") + body, utf8_addresses=not to.isascii())


def _written(build):
    """Anything that goes wrong while writing an email is a BuildError with the reason."""
    @functools.wraps(build)
    def write(*args, **kwargs):
        try:
            return build(*args, **kwargs)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeError) as error:
            raise BuildError(f"cannot write the email: {type(error).__name__}: {error}") \
                from error
    return write


LINK_LABELS = {"snooze_hour": "Snooze 1 hour", "snooze_day": "Snooze 1 day",
               "cancel": "Cancel this reminder"}
STOP_NOTICES = links.ACTIONS["stop_notices"]  # a cancellation notice's link, as its page says


@_written
def reminder_email(notification, event, send_key, sender=DEFAULT_SENDER, now=None,
                   links=None):
    """``links``: {action: URL} of the one-click links (bus.links), or None."""
    message = notification.get("message")
    values = {
        "title": one_line(event["title"]),
        "starts": local_start(event),
        "place": place_line(event),
        "email": notification["email"],
        "message_block": f"\n{message}\n" if message else "",
        "links_block": "".join(f"{LINK_LABELS[action]}: {url}\n"
                               for action, url in (links or {}).items()),
    }
    html_message = (f'<p style="white-space: pre-wrap">{html.escape(message)}</p>'
                    if message else "")
    html_links = " &middot; ".join(
        f'<a href="{html.escape(url)}">{LINK_LABELS[action]}</a>'
        for action, url in (links or {}).items())
    text, html_body = _both("reminder", values, {
        "message_block": html_message,
        "links_block": f"<p>{html_links}</p>" if html_links else ""})
    attachment = ("event.ics", calendar(event, now), '; method="PUBLISH"')
    unsubscribe = _one_click(links["cancel"]) if links and "cancel" in links else ""
    return _message(sender, notification["email"], notification["subject"], send_key,
                    text, html_body, attachment, now, unsubscribe)


def _one_click(url):
    """RFC 8058: mail clients offer "unsubscribe", which POSTs to this link."""
    return (_header("List-Unsubscribe", f"<{url}>")
            + "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")


@_written
def cancelled_email(to, event, notifications, send_key, sender=DEFAULT_SENDER, now=None,
                    series=None, stop_url=None, signed=False):
    """``series``: {id, occurrences} when a series change cancelled several occurrences
    (``event`` is the first of them): one email for all. ``stop_url``: where the user
    stops these notices, shown in both bodies (``signed``: a bus.links link, then also
    the RFC 8058 unsubscribe; otherwise the web app's account page)."""
    lines = [f"- {one_line(n['subject'])} (due {n['remind_at']})" for n in notifications]
    items = "".join(f"<li>{html.escape(one_line(n['subject']))} "
                    f"(due {html.escape(n['remind_at'])})</li>" for n in notifications)
    title = one_line(event["title"])
    if series is None:
        intro, starts_label = "The event you set reminders for has been cancelled.", \
            "It was to start:"
    else:
        count = series["occurrences"]
        intro = (f"The recurring event you set reminders for has been cancelled: "
                 f"{count} occurrence{'s' if count != 1 else ''}, from the one below on.")
        starts_label = "First to start:"
    values = {"title": title, "starts": local_start(event), "place": place_line(event),
              "reminders": "\n".join(lines), "intro": intro,
              "starts_label": f"{starts_label:<16}",  # aligned with "Where:"
              "stop_block": f"{STOP_NOTICES}: {stop_url}\n" if stop_url else ""}
    html_stop = (f'<p><a href="{html.escape(stop_url)}">{html.escape(STOP_NOTICES)}</a></p>'
                 if stop_url else "")
    text, html_body = _both("cancelled", values, {"reminders": items, "stop_block": html_stop})
    return _message(sender, to, f"Cancelled: {title}", send_key, text, html_body, now=now,
                    extra_headers=_one_click(stop_url) if stop_url and signed else "")


@_written
def alert_email(to, saved_search, events, send_key, stop_url, public_url,
                sender=DEFAULT_SENDER, now=None, signed=True):
    """A saved search's alert: one event (``instant``) or a digest (``daily``), with the
    one-click link that stops the saved search (``signed``: a bus.links link, then
    also the RFC 8058 unsubscribe; otherwise the web app's account page)."""
    name = one_line(saved_search["name"])
    if saved_search["frequency"] == "instant" and len(events) == 1:
        subject = f"New event: {one_line(events[0]['title'])}"
    else:
        subject = f"{len(events)} new event{'s' if len(events) != 1 else ''}: {name}"
    lines, items = [], []
    for event in events:
        title, url = one_line(event["title"]), f"{public_url}/#/events/{event['id']}"
        lines.append(f"- {title}\n  When:  {local_start(event)}\n  Where: "
                     f"{place_line(event)}\n  {url}\n")
        items.append(f'<li><a href="{html.escape(url)}">{html.escape(title)}</a><br>'
                     f"{html.escape(local_start(event))}<br>"
                     f"{html.escape(place_line(event))}</li>")
    values = {"heading": f"New events for your saved search \u201c{name}\u201d",
              "events": "\n".join(lines), "stop_url": stop_url, "name": name,
              "frequency": saved_search["frequency"], "email": to}
    text, html_body = _both("alert", values, {"events": f"<ul>{''.join(items)}</ul>"})
    return _message(sender, to, subject, send_key, text, html_body, now=now,
                    extra_headers=_one_click(stop_url) if signed else "")


@_written
def welcome_email(user, send_key, sender=DEFAULT_SENDER, now=None):
    values = {"username": user["username"], "email": user["email"]}
    text, html_body = _both("welcome", values)
    return _message(sender, user["email"], "Welcome to EventPost", send_key, text, html_body,
                    now=now)


# .ics (RFC 5545): the lines as bus.ical writes every calendar

def calendar(event, now=None):
    start = _time(event["starts_at"])
    end = _time(event["ends_at"]) if event.get("ends_at") else start + timedelta(hours=1)
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//EventPost//Reminders//EN",
        "METHOD:PUBLISH", "BEGIN:VEVENT",
        f"UID:{event['id']}@eventpost",
        f"SEQUENCE:{int(event.get('version') or 1)}",
        f"DTSTAMP:{ical.utc_stamp(now or datetime.now(timezone.utc))}",
        f"DTSTART:{ical.utc_stamp(start)}",
        f"DTEND:{ical.utc_stamp(end)}",
        f"SUMMARY:{ical.text(event['title'])}",
    ]
    if event.get("description"):
        lines.append(f"DESCRIPTION:{ical.text(event['description'])}")
    place = event.get("place")
    if place:
        lines.append(f"LOCATION:{ical.text(place_line(event))}")
        lines.append(f"GEO:{float(place['lat']):.6f};{float(place['lng']):.6f}")
    lines += ["END:VEVENT", "END:VCALENDAR"]
    return ical.content(lines).decode()


# sending

def _by_code(code, reply):
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    reason = f"{code} {text}".strip()
    return PermanentFailure(reason) if 500 <= int(code) < 600 else TransientFailure(reason)


class Pool:
    """Up to ``size`` SMTP connections to one server, kept open between messages.

    ``send`` borrows a connection (opening one if none is idle), runs one mail
    transaction on it and gives it back unless it broke. A connection that the
    server closed while idle shows up as a failure of MAIL FROM: that is before
    anything was handed over, so the message is tried once more on a new one.
    """

    def __init__(self, host, port, timeout=10.0, size=8):
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.size = max(1, int(size))
        self._slots = Semaphore(self.size)
        self._idle = []

    def _connect(self):
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            client.ehlo_or_helo_if_needed()
            return client
        except smtplib.SMTPResponseException as error:  # e.g. a 421 greeting
            raise _by_code(error.smtp_code, error.smtp_error) from error
        except (smtplib.SMTPException, OSError) as error:  # refused, reset, timed out
            raise TransientFailure(f"{type(error).__name__}: {error}") from error

    def send(self, email, committing=lambda: True):
        """Hand ``email`` to the server. ``committing()`` is called once the server has
        accepted sender and recipients, right before the content: from then on it may
        have the mail even if we never hear its answer (precisely: once the server has
        said 354 to DATA). It returns False to call the transaction off (someone else
        has the send key). Returns whether it was sent;
        raises TransientFailure, PermanentFailure or UncertainDelivery."""
        with self._slots:
            client = self._idle.pop() if self._idle else None
            for fresh in ((False, True) if client is not None else (True,)):
                if fresh:
                    client = self._connect()
                try:
                    sent = self._transaction(client, email, committing)
                except _Stale:
                    _close(client)
                    if fresh:
                        raise TransientFailure("the server closed the connection") from None
                    continue
                except _Spoilt:  # called off, and the connection is no good any more
                    _close(client)
                    return False
                except BaseException:
                    _close(client)  # a failed exchange leaves it in an unknown state
                    raise
                self._idle.append(client)
                return sent

    def _transaction(self, client, email, committing):
        committed = False
        try:
            options = []
            if email.utf8_addresses:
                if not client.has_extn("smtputf8"):
                    raise PermanentFailure("the server does not take non-ASCII addresses "
                                           "(no SMTPUTF8)")
                options.append("SMTPUTF8")
            try:
                code, reply = client.mail(email.sender, options)
            except smtplib.SMTPServerDisconnected:
                raise _Stale() from None
            if code == 421:
                raise _Stale()
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, email.sender)
            for recipient in email.recipients:
                code, reply = client.rcpt(recipient)
                if code not in (250, 251):
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            # DATA in two steps (smtplib's data() is one): the server says 354 before
            # anything is handed over, so only the content and its answer are uncertain
            code, reply = client.docmd("data")
            if code != 354:
                raise smtplib.SMTPDataError(code, reply)
            if not committing():
                raise _Spoilt()  # in DATA there is no RSET: drop the connection
            committed = True
            content = smtplib._quote_periods(email.data)  # CRLF already (the writer)
            client.send(content + (b"" if content.endswith(b"\r\n") else b"\r\n") + b".\r\n")
            code, reply = client.getreply()
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
            return True
        except smtplib.SMTPRecipientsRefused as error:
            code, reply = next(iter(error.recipients.values()))
            raise _by_code(code, reply) from error
        except smtplib.SMTPResponseException as error:
            raise _by_code(error.smtp_code, error.smtp_error) from error
        except (smtplib.SMTPException, OSError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise (UncertainDelivery if committed else TransientFailure)(reason) from error

    def close(self):
        while self._idle:
            _close(self._idle.pop())


class _Stale(Exception):
    """A kept-open connection turned out to be closed before anything was sent."""


class _Spoilt(Exception):
    """The transaction was called off where the connection cannot be reset."""


def _close(client):
    try:
        client.close()
    except (OSError, socket.error):
        pass
