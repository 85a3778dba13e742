"""Delivery as plain functions: every email over SMTP at most once per send key.

Exactly once, as far as SMTP allows (``deliver_one``):
1. the email is written (a BuildError fails it at once, with the reason);
2. on a kept-open SMTP connection (smtp.Pool), the server accepts sender and
   recipients; then, right before the DATA command, the send key's hand-over mark
   is inserted (storage.py). Whoever inserts the mark has the key: a second copy
   of the message, another instance, or the notifications service's withdrawal
   (its event was cancelled, its account deleted) finds the mark there and does
   not send;
3. the outcome (sent, or failed with the reason) is recorded once per key and
   reported in a ``delivery_report``; a transient failure (no connection, a 4xx
   reply) gives the mark back and reports the reminder ``deferred``, and the
   notifications service hands it over again later, with backoff.
A mark without an outcome means the holder is handing the mail over right now, or
died while doing it. Older than the lease, such a key ends ``failed`` with the
reason ``interrupted`` and is never sent again: the server may have accepted it
just before the crash, and API.md says a reminder is never mailed twice. The
window is the DATA exchange alone: each step also goes to a local journal at once,
which another mailer on the machine settles if this one dies (storage.Journal). Every
mail carries a Message-ID made from its send key (smtp.py), so clients can tell
copies apart if one is ever sent twice anyway.

Outcome reports are published after the outcome is recorded, not through an
outbox: if one is lost, the reminder's lease runs out in the notifications
service, it hands the reminder over again, and ``deliver`` answers from the log
(``report_known``) without sending.
"""
import logging
from dataclasses import dataclass, field

import eventlet
from pymongo.errors import PyMongoError

from bus import links
from bus.errors import ValidationError
from bus.messages import iso

from . import smtp, storage

log = logging.getLogger(__name__)
INTERRUPTED = ("interrupted while handing the mail to the SMTP server; not sent again, "
               "so that it cannot arrive twice")


@dataclass
class Mail:
    """One email to deliver: ``write()`` makes it (smtp.py), lazily, so a key that was
    already delivered costs nothing to skip."""

    send_key: str
    kind: str  # reminder | cancelled | welcome | alert
    notification_id: str | None
    write: object
    attempt: int = 1
    outcome: dict = field(default=None, repr=False)


def reminder_links(secret, public_url, now):
    """``links_of(item)``: the one-click links (bus.links) of a ``reminder_due`` item,
    {action: URL}; None without a signing secret, or for an item that does not say
    whose reminder it is and which arm (one from before links existed)."""
    def links_of(item):
        user_id, arm = item.get("user_id"), item.get("arm")
        if not secret or not isinstance(user_id, str) or not isinstance(arm, int):
            return None
        reminder_id = item["notification"]["id"]
        return {action: links.url(public_url, links.sign(secret, action, user_id, reminder_id,
                                                         now, arm=arm))
                for action in links.REMINDER_ACTIONS}
    return links_of


def stop_url(secret, public_url, action, user_id, target_id, now):
    """The stop link (bus.links) of an alert email (``stop_alert``: its saved search) or
    a cancellation notice (``stop_notices``: its user); and whether it is a link. Without
    a signing secret, or a user to sign for (a notice from before notices named theirs),
    the web app's account page, where the same is done by hand."""
    if not secret or not isinstance(user_id, str):
        return f"{public_url}/#/account", False
    return links.url(public_url, links.sign(secret, action, user_id, target_id, now)), True


def reminders(data, sender, now=None, links=None):
    """The Mails of a ``reminder_due`` batch (bus.messages); ``links``: reminder_links'
    function, or None for emails without one-click links."""
    events = data.get("events") if isinstance(data.get("events"), dict) else {}
    mails = []
    for item in data.get("reminders") or []:
        try:
            key, notification = item["send_key"], item["notification"]
            notification_id = notification.get("id")
            attempt = int(item.get("attempt") or 1)
        except (TypeError, KeyError, ValueError, AttributeError):
            # nothing to report it under: say so and deliver the rest
            log.error("reminder_due: dropping a malformed item %.300r", item)
            continue
        event = events.get(item.get("event_id")) or {}

        urls = links(item) if links is not None else None

        def write(notification=notification, event=event, key=key, urls=urls):
            return smtp.reminder_email(notification, event, key, sender, now, urls)

        mails.append(Mail(key, "reminder", notification_id, write, attempt))
    return mails


def outcome(mail, status, moment, reason=None):
    return {"_id": mail.send_key, "send_key": mail.send_key, "status": status,
            "notification_id": mail.notification_id, "kind": mail.kind,
            "at": moment, "reason": reason}


def report_item(entry):
    """An outcome as ``delivery_report`` carries it."""
    return {"send_key": entry["_id"], "notification_id": entry.get("notification_id"),
            "status": entry["status"], "at": iso(entry.get("at")), "reason": entry.get("reason")}


def deliver(post, mails):
    """Deliver a batch; returns their outcomes, in order (None for a key that is
    someone else's to report)."""
    known = {}
    retried = [m.send_key for m in mails if m.attempt > 1]
    if retried:  # handed over again: some may be done already
        known = post.known_outcomes(retried)
        post.report(list(known.values()))
    pool = eventlet.GreenPool(post.parallel)
    waits = list(pool.imap(lambda mail: None if mail.send_key in known
                           else deliver_one(post, mail), mails))
    return [known.get(mail.send_key) if wait is None else wait()
            for mail, wait in zip(mails, waits, strict=True)]


def deliver_one(post, mail, again=True):
    """Send one mail; returns a callable that waits until its outcome is recorded and
    returns it, or None if the key is someone else's to report."""
    try:
        email = mail.write()
    except smtp.BuildError as error:
        return post.record(outcome(mail, "failed", post.now(), str(error)))
    held = {}

    def committing():
        held["mine"] = post.take(mail)
        if held["mine"]:
            post.handing_over(mail.send_key)
        return held["mine"]

    try:
        sent = post.send(email, committing)
    except smtp.PermanentFailure as error:
        return post.record(outcome(mail, "failed", post.now(), str(error)))
    except smtp.UncertainDelivery as error:
        return post.record(outcome(mail, "failed", post.now(), f"{INTERRUPTED} ({error})"))
    except (smtp.TransientFailure, PyMongoError) as error:
        if held.get("mine"):
            post.release(mail.send_key)
        return post.record(outcome(mail, "deferred", post.now(), str(error)))
    if sent:
        return post.record(outcome(mail, "sent", post.now()))
    return someone_elses(post, mail, again)


def someone_elses(post, mail, again=True):
    """The key's mark was there already: report what is known, settle a dead holder's
    key, or leave a live holder alone."""
    mark = post.mark(mail.send_key)
    if mark is None and again:
        return deliver_one(post, mail, again=False)  # given back meanwhile
    if mark is None or mark.get("withdrawn"):
        return None  # withdrawn: the notifications service cancelled it itself
    ours = mark.get("holder") == post.holder
    if ours and post.holds(mail.send_key):
        return None  # being sent by this process right now (it stops holding it once
        # the outcome is recorded, so the check below then finds the outcome)
    if not ours:
        post.recover()  # its holder may have died on this machine: settle its journal
    known = post.known_outcomes([mail.send_key])
    if known:
        return post.record(known[mail.send_key], recorded=True)
    if ours:
        # our own mark from a write whose answer we never got: it was not sent
        post.release(mail.send_key)
        return post.record(outcome(mail, "deferred", post.now(), "taken again after an error"))
    if post.mark(mail.send_key) is None and again:
        return deliver_one(post, mail, again=False)  # its holder died before DATA
    if (post.now() - mark["at"]).total_seconds() > post.lease_seconds:
        return post.record(outcome(mail, "failed", post.now(), INTERRUPTED))
    return None  # a live instance has it and will report it (or its lease will run out)


def withdraw(db, send_keys, holder, now):
    """The notifications service's RPC: mark keys withdrawn unless already taken."""
    if not isinstance(send_keys, list) or not all(isinstance(k, str) for k in send_keys):
        raise ValidationError({"send_keys": ["Expected a list of send keys."]})
    withdrawn, taken = storage.withdraw(db, send_keys, holder, now)
    return {"withdrawn": withdrawn, "taken": taken}
