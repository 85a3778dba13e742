"""Delivery as a plain function: each email over SMTP at most once per send key.

Exactly-once, as far as SMTP allows (``deliver``):
1. the send key is recorded in the sent log (unique ``_id``), claimed by this
   instance with a lease (``MAILER_LEASE_SECONDS``, default 30); a key already
   ``sent`` or ``failed`` is never mailed again, whatever redelivers it;
2. a second copy of the message (the outbox publishes at least once) finds the key
   held and waits for the holder's outcome instead of sending too;
3. SMTP: right before the DATA command the entry becomes ``committing``;
4. the outcome and its ``email_sent`` / ``email_failed`` message are stored in one
   write (bus.outbox) and published.
If the holder dies (its lease runs out), the redelivered message resends a key
still ``sending`` (the server never got the mail), but not one ``committing``: the
server may have accepted it just before the crash, and API.md says a reminder is
never mailed twice. That key ends ``failed`` with the reason ``interrupted ...``;
the user sees it and can snooze the reminder to re-arm it. The window is the DATA
exchange plus one database write, milliseconds. Every mail carries a Message-ID
made from its send key (smtp.py), so clients can tell copies apart if ever one is
sent twice anyway. The lease outlives any live send (SMTP_TIMEOUT, default 10 s
per socket operation), so a slow but live sender is not overtaken.

Transient SMTP failures (no connection, 4xx) release the key and raise, so
bus.reliable retries with exponential backoff; the last attempt it would make
(``HANDLER_MAX_ATTEMPTS``) reports ``email_failed`` instead of parking the message,
so the user sees why. Permanent failures (5xx) report ``email_failed`` at once.
"""
import logging
import uuid

import eventlet

from bus.messages import iso, new_message, utc_now

from . import smtp, storage

log = logging.getLogger(__name__)
INTERRUPTED = ("interrupted while handing the mail to the SMTP server; not sent again, "
               "so that it cannot arrive twice")


def deliver(db, relay, send_key, kind, notification_id, email, transmit, max_attempts,
            lease_seconds, now=utc_now, sleep=eventlet.sleep):
    """Send ``email`` once for ``send_key``; returns the key's final status."""
    owner = uuid.uuid4().hex
    claimed = storage.claim_first(db, send_key, kind, notification_id, owner, now(),
                                  lease_seconds)
    while claimed is None:
        entry = storage.entry(db, send_key)
        if entry["status"] in storage.DONE:
            return entry["status"]
        if storage.abandoned_while_committing(db, send_key, owner, now()):
            return _finish(db, relay, send_key, owner, notification_id, now(), INTERRUPTED)
        claimed = storage.claim(db, send_key, owner, now(), lease_seconds)
        if claimed is None:  # another instance holds it: wait for its outcome or its end
            sleep(min(0.5, max(0.05, (entry["lease_until"] - now()).total_seconds())))
    try:
        transmit(email, lambda: storage.committing(db, send_key, owner))
    except smtp.PermanentFailure as error:
        return _finish(db, relay, send_key, owner, notification_id, now(), str(error))
    except smtp.UncertainDelivery as error:
        return _finish(db, relay, send_key, owner, notification_id, now(),
                       f"{INTERRUPTED} ({error})")
    except smtp.TransientFailure as error:
        if claimed["attempts"] >= max_attempts:
            reason = f"gave up after {claimed['attempts']} attempts: {error}"
            return _finish(db, relay, send_key, owner, notification_id, now(), reason)
        storage.release(db, send_key, owner, str(error))
        raise  # bus.reliable retries it after a backoff
    return _finish(db, relay, send_key, owner, notification_id, now(), None)


def _finish(db, relay, send_key, owner, notification_id, moment, failure):
    if failure is None:
        status, fields = "sent", {"sent_at": moment}
        message = new_message("mailer", "email_sent", send_key, 1, send_key=send_key,
                              notification_id=notification_id, sent_at=iso(moment))
    else:
        status, fields = "failed", {"reason": failure}
        message = new_message("mailer", "email_failed", send_key, 1, send_key=send_key,
                              notification_id=notification_id, reason=failure)
    if not storage.finish(db, send_key, owner, status, moment, message, **fields):
        log.warning("send key %s: lease lost before recording %s", send_key, status)
    relay(storage.SENDS, send_key)
    return status
