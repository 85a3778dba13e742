"""Message contracts: the events services publish, and who listens to them.

Every message is an envelope ``{event_type, event_id, aggregate_id, version,
occurred_at, data}``: ``event_id`` lets a consumer drop duplicates, ``version``
(of the aggregate, counting from 1) lets a projection ignore stale or
out-of-order deliveries. ``data`` is specific to each event type (below).

``SUBSCRIPTIONS`` is the one list of who consumes what. Publishers declare the
consumers' queues from it at start-up (an event published to an exchange with no
bound queue is dropped by RabbitMQ), and ``bus.reliable.subscribe`` names the
queues the same way, so the two cannot drift apart (tests/unit/test_messages.py).
"""
import uuid
from datetime import datetime, timezone

from marshmallow import Schema, fields

# data of each event type, by (source service, event type). `event` and `user` are
# the full resource as API.md returns it.
DATA_FIELDS = {
    ("users", "user_registered"): ["user"],
    ("users", "user_email_changed"): ["user", "old_email", "new_email"],
    ("users", "user_email_added"): ["user", "email"],
    ("users", "user_email_removed"): ["user", "email"],
    ("users", "user_role_changed"): ["user"],
    # `user.tokens_valid_after`: tokens issued before it no longer work
    ("users", "user_password_changed"): ["user"],
    ("users", "user_deleted"): ["user_id"],
    ("events", "event_created"): ["event"],
    # `changed`: the names of the fields whose value changed in this version.
    ("events", "event_updated"): ["event", "changed", "previous"],
    ("events", "event_deleted"): ["event"],
    # A series PATCH that cancels, or a series DELETE (API.md v1.1): one message for the
    # whole change beside each occurrence's own, so that each user is told once.
    # `change_id`: that change; `occurrences`: [{id, version}] of every occurrence it
    # cancelled or deleted (the version that did it); `first`: the soonest, as it was.
    ("events", "series_cancelled"): ["series_id", "change_id", "occurrences", "first"],
    # The mailer sends one email per `send_key` at most. `reminders`: a batch, each
    # {send_key, notification, event_id, attempt}; `events`: {event id: event} they need.
    ("notifications", "reminder_due"): ["reminders", "events"],
    # `user_id`: whose (the mailer signs its stop link; one published before it was
    # added has none, and the mailer sends it without the link)
    ("notifications", "event_cancelled_notice"): ["send_key", "email", "user_id", "event",
                                                  "notifications"],
    # A saved search's alert email (instant: one event; daily: a digest of several).
    # `saved_search`: the resource; `user_id`: whose (the mailer signs its stop link).
    ("alerts", "alert_due"): ["send_key", "email", "user_id", "saved_search", "events"],
    # `outcomes`: a batch, each {send_key, notification_id, status: "sent" | "failed" |
    # "deferred" (a transient failure: not sent, try again later), at, reason}.
    ("mailer", "delivery_report"): ["outcomes"],
}

# Data a message of that type may carry besides its own. `series_change`: the
# `change_id` of the series_cancelled message that covers this occurrence's cancellation.
OPTIONAL_FIELDS = {
    ("events", "event_updated"): ["series_change"],
    ("events", "event_deleted"): ["series_change"],
    # `series`: {id, occurrences} for one notice covering a series change's occurrences
    # (`event`: the first of them)
    ("notifications", "event_cancelled_notice"): ["series"],
}

SUBSCRIPTIONS = {
    ("users", "user_registered"): ["mailer"],
    ("users", "user_email_changed"): ["notifications", "alerts"],
    ("users", "user_email_added"): [],
    ("users", "user_email_removed"): ["notifications"],
    ("users", "user_role_changed"): [],
    ("users", "user_password_changed"): [],
    ("users", "user_deleted"): ["notifications", "alerts"],
    ("events", "event_created"): ["search", "notifications", "alerts"],
    ("events", "event_updated"): ["search", "notifications", "alerts"],
    ("events", "event_deleted"): ["search", "notifications", "alerts"],
    ("events", "series_cancelled"): ["notifications"],
    ("notifications", "reminder_due"): ["mailer"],
    ("notifications", "event_cancelled_notice"): ["mailer"],
    ("alerts", "alert_due"): ["mailer"],
    ("mailer", "delivery_report"): ["notifications"],
}


# Read models held in memory by every process of a service (the gateway's, in
# services/gateway/read_models.py): each process gets every message through an
# exclusive queue of its own that lives as long as the process, so nothing piles up
# for a process that is gone. What a process missed while not listening it catches
# up by RPC. These are not in SUBSCRIPTIONS: publishers declare no durable queue for them.
BROADCASTS = {
    "gateway": [(source, event_type) for source, event_type in DATA_FIELDS
                if source in ("users", "events") and event_type != "series_cancelled"],
}


def queue_name(source_service, event_type, consumer_service):
    return f"evt-{source_service}-{event_type}--{consumer_service}"


class Envelope(Schema):
    event_type = fields.String(required=True)
    event_id = fields.String(required=True)
    aggregate_id = fields.String(required=True)
    version = fields.Integer(required=True)
    occurred_at = fields.String(required=True)
    data = fields.Dict(required=True)


def utc_now():
    return datetime.now(timezone.utc)


def iso(moment):
    """API.md's output form: UTC with a Z."""
    if moment is None:
        return None
    if moment.tzinfo is None:  # stored datetimes are UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def new_message(source_service, event_type, aggregate_id, version, **data):
    """Build an envelope; raises if ``data`` does not match the contract."""
    expected = DATA_FIELDS[(source_service, event_type)]
    optional = OPTIONAL_FIELDS.get((source_service, event_type), [])
    if not set(expected) <= set(data) <= set(expected) | set(optional):
        raise ValueError(f"{event_type} carries {expected} (and may carry {optional}), "
                         f"got {sorted(data)}")
    message = {
        "event_type": event_type,
        "event_id": uuid.uuid4().hex,
        "aggregate_id": str(aggregate_id),
        "version": int(version),
        "occurred_at": iso(utc_now()),
        "data": data,
    }
    return Envelope().load(message)
