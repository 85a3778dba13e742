"""The OpenAPI 3 document of API.md, generated from schemas.py with apispec.

``OPERATIONS`` lists every route the gateway serves (a unit test compares it with
the service's URL map). Choices API.md leaves open are written into the
descriptions here, so a client reads them in /openapi.json.
"""
import re
from functools import lru_cache

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from bus import fields as rules
from services.gateway import schemas, web
from services.gateway.http import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY,
    MAX_BODY_BYTES,
    MAX_REQUEST_LINE,
)

DESCRIPTION = f"""EventPost: discover social events by topic, time and place, and get email
reminders about them.

Conventions (beyond API.md):
- Request bodies are JSON objects sent with `Content-Type: application/json` (a
  `charset` parameter is allowed); a body of more than {MAX_BODY_BYTES} bytes is a 413,
  whatever `Content-Length` says. A request without a body needs no content type.
- Unknown fields in a body, and unknown query parameters, are a 422 naming them.
  A query parameter other than `topic` given twice is a 422.
- Times are RFC 3339 with an offset; an unencoded `+` in a query-string offset
  (which URL decoding turns into a space) is read as the `+` it was meant to be.
- Times keep millisecond precision: finer input is rounded down to the millisecond.
  Accepted times lie from 0001-01-02T00:00:00Z to 9999-12-30T23:59:59.999Z (a day
  inside the calendar, so every time zone can show them); others are a 422.
- Text (API.md v1.1): no string takes control characters (U+0000..U+001F,
  U+007F..U+009F) except `\\n` and `\\t` in `description` and `message`; the other
  strings (titles, subjects, names, topics, addresses, ...) take no line breaks
  (U+2028 and U+2029 included). Lone surrogates are refused everywhere. Passwords may
  hold any characters. Each field's `minLength`, `maxLength`, `pattern`, `minimum` and
  `maximum` here are the rules the gateway and the services apply (bus.fields); where
  API.md is silent: `email` at most 254 characters (the longest deliverable address),
  `message` 4000, `subject`, `organizer`, a place's `name` and `event_id` 200, a
  place's `address` and `q` 500.
- A change that keeps losing the race against concurrent changes of the same resource
  is retried a few times, then answered 409 `conflict`: read the resource and retry.
- Cursors are opaque; a cursor that this API did not make is a 422 naming `cursor`.
- A body check (400, 413) happens before authentication; 401/403 come before 422.
- 401 responses carry `WWW-Authenticate: Bearer`; 429 responses carry `Retry-After`
  (seconds).
- Every response with status >= 400 has the `Error` body; 503 from /health also
  has `status` and `services`. That includes what the HTTP server refuses before
  any route runs: a malformed request line or header, a negative, non-numeric or
  repeated `Content-Length`, or one with `Transfer-Encoding` (400 `bad_request`), a
  request line over {MAX_REQUEST_LINE} bytes (414 `uri_too_long`), a header line over
  8 KiB, headers over 64 KiB in all or more than 100 of them (431
  `headers_too_large`), and HTTP/2 or later (505 `http_version_not_supported`).
"""

ERRORS = {
    400: ("BadRequest", "The body is not JSON, not an object, or has the wrong content type; "
          "or the request line or a header is malformed."),
    401: ("Unauthorized", "Missing, malformed, expired or revoked bearer token."),
    403: ("Forbidden", "Authenticated, but this needs an admin account."),
    404: ("NotFound", "No such resource (a malformed id is the same as an unknown one)."),
    405: ("MethodNotAllowed", "The resource does not support this method (see Allow)."),
    409: ("Conflict", "The change conflicts with the resource's state."),
    410: ("Gone", "The link has expired (links work for 30 days)."),
    413: ("PayloadTooLarge", f"The body is over {MAX_BODY_BYTES} bytes."),
    414: ("UriTooLong", f"The request line is over {MAX_REQUEST_LINE} bytes."),
    422: ("ValidationError", "`details` maps each bad field to a list of messages."),
    429: ("RateLimited", "Too many attempts; retry after `Retry-After` seconds."),
    431: ("HeadersTooLarge", "A header line is over 8 KiB, or the headers together over "
          "64 KiB, or there are more than 100."),
    503: ("Unavailable", "A backing service did not answer in time."),
}

TOKEN_DESCRIPTION = """Exchange a username or an email, and the password, for a bearer token
(HS256 JWT). Unknown user and wrong password give the same 401. Throttling refuses
the client, never the account: after 5 failures for one name (username or email, as
typed) from one client address within 15 minutes, or 50 for all names from one
address, that client gets 429 with `Retry-After` (seconds), whatever password it
sends, until the oldest of those failures is 15 minutes old; the owner logging in
from another address is never refused. IPv6 clients count by their /64. An unknown
name is counted and answered exactly like a known one. A right password forgives
that name's failures from that address. The response is sent with
`Cache-Control: no-store`."""

ADD_EMAIL_DESCRIPTION = """Adds a secondary email. An email already used by any account
(as primary or secondary) is a 409; the users service may cap the number of secondary
emails per account (409 beyond it)."""

CREATE_EVENT_DESCRIPTION = """Admin only. Required: `title`, `starts_at`, `topics`.
Defaults: `description` "", `ends_at` null, `timezone` "UTC", `place` null,
`organizer` null, `status` "scheduled". Topics are trimmed, lower-cased and
de-duplicated. `ends_at` must be after `starts_at` (checked here when both are in the
body, by the events service against the stored `starts_at` otherwise).

`recurrence` (an RRULE, see the Event schema) makes a recurring event: every occurrence
is created at once as an event of its own (own `id`, `version`, searchable and
remindable) with `series_id` and `recurrence` set, and the answer is the first
occurrence. Occurrences keep the wall-clock time of `starts_at` in `timezone` across
daylight-saving changes, and the first one's wall-clock duration. As in RFC 5545,
`starts_at` is the first occurrence only if it matches the rule (a `BYDAY=TU` rule
with a Monday `starts_at` begins the Tuesday after); a wall-clock time skipped by a
spring-forward change is taken with the offset before it (02:30 becomes 03:30 summer
time). The series' id is the first occurrence's id. At most 500 occurrences, however
the series ends. A rule outside the subset, COUNT over 500, UNTIL more than 2 years
after `starts_at`, or a rule that makes no occurrence: 422 naming `recurrence`."""

SERIES_DESCRIPTION = """Public. `occurrences`: how many occurrences the series has now
(deleted ones not counted, past ones counted); `next`: the soonest occurrence that has
not started yet, or null. A series none of whose occurrences remains is a 404."""

UPDATE_SERIES_DESCRIPTION = """Admin only. Any non-empty subset of the writable fields
but `recurrence` (any value of it is a 422 naming it). Changes every occurrence that
has not started yet (`starts_at` after now), each exactly as `PATCH /events/{id}` would
(its `version` + 1, its reminders follow); started ones stay as they are. `starts_at`
is the new start of the next occurrence: each occurrence moves by the same wall-clock
shift in its time zone (the new `timezone` if given), so a 19:00 weekly event moved to
20:00 is at 20:00 local on both sides of a daylight-saving change. `ends_at` sets the
next occurrence's end, and every occurrence then lasts as long on the wall clock;
without it each keeps its own duration (`null` removes every end). Answers the series
(as `GET /series/{id}`). Unknown series: 404. A 409 (an occurrence kept changing
under concurrent writes) may leave some occurrences changed: its `details` list the ids
`changed` and those `unchanged`, and the same PATCH again completes it: the ones it
changed are left as they are (unless something changed them since) and the others
change as they would have (a move by the same shift as the first time). Once done, the
same PATCH again changes nothing. `status`
`cancelled` cancels them, and each user with reminders on them gets one email for the
series, as for a DELETE (after a 409, one for what was cancelled and one for what the
PATCH again cancels)."""

DELETE_SERIES_DESCRIPTION = """Admin only. Deletes every occurrence that has not started
yet (`starts_at` after now), each as `DELETE /events/{id}` would; started ones stay, so
`GET /series/{id}` still answers while any remains. Their scheduled reminders are
cancelled, and each user who had any gets one email for the whole series (not one per
occurrence). Unknown series: 404; a series with nothing left to delete: 204. A 409 (an
occurrence kept changing under concurrent writes) lists in its `details` the ids
`changed` (deleted) and `unchanged`; the same DELETE again deletes the rest."""

UPDATE_EVENT_DESCRIPTION = """Admin only. Any non-empty subset of the writable fields
(an empty body is a 422); `ends_at`, `place` and `organizer` may be set to null.
`status: "cancelled"` cancels the event. `version` goes up by one."""

SEARCH_DESCRIPTION = """Public search over the read model (a write shows up within a second).
All parameters are optional and combine. `q` words must all appear in the title,
description, topics or place name. `sort=distance` needs `near`. `to` must be after
`from` when both are given."""

CREATE_NOTIFICATION_DESCRIPTION = """Exactly one of `remind_at` or `before_minutes` (0 up to
ten years). `email` defaults to the account's primary email and must be one of its
emails; unknown or cancelled events, and a time not in the future, are 422."""

CREATE_SAVED_SEARCH_DESCRIPTION = f"""A saved search: `query` takes any of `topic` (a list,
trimmed and lower-cased: an event with any of them matches), `q` (words that must all
appear), `near` (`"lat,lng"`) with `radius_km` (default 10, at most 500; `radius_km`
without `near` is a 422), and `within_days` (1..365: events starting in the next N
days); an empty `query` matches every new event. Each part means what it means in
`GET /events`. `frequency`: `instant` (an email per new event, within a minute) or
`daily` (one digest email per day at most: the first new event opens a digest that
collects for a day). An event is announced when it newly matches (created matching,
or changed so that it matches now and did not before), is upcoming and scheduled;
never twice to one saved search, and a cancelled, deleted or since-changed event
is left out when the email is made. `email` is the account's primary email and
follows a change of it. At most {rules.MAX_SAVED_SEARCHES} per account: the next is a
409 `conflict` (details: `limit`). Bad fields are 422 naming them, e.g. `query.near`.
Every alert email has a one-click link that stops the saved search (`/links/{{token}}`),
also its `List-Unsubscribe` (RFC 8058)."""

PREFERENCES_DESCRIPTION = """`cancellation_notices`: whether an event's cancellation sends you
the email that says so (one per cancelled event or series; true until turned off). Off,
your reminders of a cancelled event are still `cancelled`, with no email. Every such
email has a one-click link that turns it off (`/links/{token}`, also its
`List-Unsubscribe`, RFC 8058); this turns it back on."""

OPERATIONS = [
    # (method, path, summary, auth, body, query, success status, success schema, errors,
    #  description)
    ("get", "/health", "Health of the gateway and every backing service", None, None,
     None, 200, schemas.Health, [], "503 has the same body, with the failing services "
     "marked `unavailable` (no answer in time) or `error`, plus `error`."),
    ("get", "/openapi.json", "This document", None, None, None, 200, None, [], None),
    ("post", "/users", "Create an account", None, schemas.Registration, None, 201,
     schemas.User, [409], "Duplicate username or email (any of a user's emails) is a 409. "
     "Sends a welcome email."),
    ("post", "/auth/token", "Get an access token", None, schemas.Credentials, None, 200,
     schemas.Token, [401, 429], TOKEN_DESCRIPTION),
    ("get", "/users/me", "The caller's account", "user", None, None, 200, schemas.User,
     [], None),
    ("patch", "/users/me", "Change the primary email", "user", schemas.EmailAddress, None,
     200, schemas.User, [409], None),
    ("delete", "/users/me", "Delete the account", "user", None, None, 204, None, [409],
     "The token stops working at once; the user's notifications are deleted."),
    ("post", "/users/me/emails", "Add a secondary email", "user", schemas.EmailAddress,
     None, 201, schemas.User, [409], ADD_EMAIL_DESCRIPTION),
    ("delete", "/users/me/emails/{email}", "Remove a secondary email", "user", None, None,
     204, None, [404, 409, 422], "Reminders using it follow to the primary email. The primary "
     "email cannot be removed (422; change it with PATCH /users/me instead)."),
    ("post", "/users/me/password", "Change the password", "user", schemas.PasswordChange,
     None, 204, None, [], "`new_password` follows registration's rule (8..256 "
     "characters). A wrong `current_password` is a 401. Every token issued before the "
     "change stops working, the one used for it included, on every gateway process "
     "(within the time a users event takes to arrive; at once on the one that answered); "
     "log in again with the new password."),
    ("get", "/users/me/email-preferences", "The caller's email choices", "user", None, None,
     200, schemas.EmailPreferences, [], PREFERENCES_DESCRIPTION),
    ("patch", "/users/me/email-preferences", "Change the caller's email choices", "user",
     schemas.EmailPreferenceChanges, None, 200, schemas.EmailPreferences, [],
     PREFERENCES_DESCRIPTION + " Any subset of the fields (`{}` changes nothing); a value "
     "that is not a JSON `true` or `false` is a 422 naming the field."),
    ("get", "/events", "Search events", None, None, schemas.EventSearch, 200,
     schemas.EventPage, [], SEARCH_DESCRIPTION),
    ("post", "/events", "Create an event", "admin", schemas.EventCreate, None, 201,
     schemas.Event, [], CREATE_EVENT_DESCRIPTION),
    ("get", "/series/{series_id}", "A recurring event's series", None, None, None, 200,
     schemas.Series, [404], SERIES_DESCRIPTION),
    ("patch", "/series/{series_id}", "Change a series' occurrences that have not started",
     "admin", schemas.SeriesChanges, None, 200, schemas.Series, [404, 409],
     UPDATE_SERIES_DESCRIPTION),
    ("delete", "/series/{series_id}", "Delete a series' occurrences that have not started",
     "admin", None, None, 204, None, [404, 409], DELETE_SERIES_DESCRIPTION),
    ("get", "/events/{event_id}", "An event (write side: a 201 is visible at once)", None,
     None, None, 200, schemas.Event, [404], None),
    ("patch", "/events/{event_id}", "Change an event", "admin", schemas.EventChanges, None,
     200, schemas.Event, [404, 409], UPDATE_EVENT_DESCRIPTION),
    ("delete", "/events/{event_id}", "Delete an event", "admin", None, None, 204, None,
     [404, 409], "Its scheduled reminders are cancelled and their owners told by email."),
    ("post", "/notifications", "Set a reminder", "user", schemas.NotificationCreate, None,
     201, schemas.Notification, [], CREATE_NOTIFICATION_DESCRIPTION),
    ("get", "/notifications", "The caller's reminders, by remind_at", "user", None,
     schemas.NotificationFilter, 200, schemas.NotificationPage, [], None),
    ("get", "/notifications/{notification_id}", "A reminder", "user", None, None, 200,
     schemas.Notification, [404], "Another user's reminder is a 404."),
    ("patch", "/notifications/{notification_id}", "Change a reminder", "user",
     schemas.NotificationChanges, None, 200, schemas.Notification, [404, 409],
     "`remind_at` or `before_minutes` (not both), `email`, `subject`, `message`. "
     "409 unless the reminder is `scheduled`."),
    ("post", "/notifications/{notification_id}/snooze", "Delay a reminder", "user",
     schemas.Snooze, None, 200, schemas.Notification, [404, 409],
     "Delays a scheduled reminder by `minutes` (1..10080), or re-arms a sent one at "
     "now + `minutes`."),
    ("delete", "/notifications/{notification_id}", "Delete a reminder", "user", None,
     None, 204, None, [404], None),
    ("post", "/saved-searches", "Save a search and get alerts of new events", "user",
     schemas.SavedSearchCreate, None, 201, schemas.SavedSearch, [409],
     CREATE_SAVED_SEARCH_DESCRIPTION),
    ("get", "/saved-searches", "The caller's saved searches, oldest first", "user", None,
     schemas.SavedSearchFilter, 200, schemas.SavedSearchPage, [], None),
    ("delete", "/saved-searches/{saved_search_id}", "Delete a saved search", "user", None,
     None, 204, None, [404], "Another user's saved search is a 404. No more alerts."),
]


FEED_DESCRIPTION = """The search's parameters (no cursor; `limit` 1..500, default 500), as an
RFC 5545 calendar: one VEVENT per event with a stable `UID`, `SEQUENCE` = `version`,
`DTSTAMP` = `updated_at`, `DTSTART`/`DTEND` with the event's `TZID` and one VTIMEZONE per
zone, `STATUS:CANCELLED` for a cancelled event. `ETag` on every answer; `If-None-Match`
with it: 304."""


MY_FEED_DESCRIPTION = """No body needed. Each call makes a new URL; the one before stops
working (404). The URL is a secret: anyone who has it can read the feed."""
USER_FEED_DESCRIPTION = """Every event the user has a `scheduled` or `sent` reminder for
(or one its cancellation cancelled), from 30 days ago on, with one VALARM per scheduled
reminder at its `remind_at`; a cancelled event has `STATUS:CANCELLED`. An unknown or
replaced token: 404. `ETag` and 304 as for `/events.ics`."""


LINK_DESCRIPTION = """A one-click link from an email: snooze the reminder for 1 hour or 1
day, or cancel it; in an alert email, stop (delete) the saved search; in a cancellation
notice, stop those notices (`cancellation_notices` of `/users/me/email-preferences`
false). The token is signed, does that one thing to that one reminder, saved search or
account, and expires after 30 days (410). An unknown or altered token: 404. A used
snooze or stop link does nothing the second time (200, and says so)."""


def _link_operations():
    """GET shows a page with one button; POST (the button, or RFC 8058's one-click
    unsubscribe: its form body is not read) acts."""
    get = _operation("What a one-click link will do (HTML)", None, None, None, 200, None,
                     [404, 410], LINK_DESCRIPTION)
    get["responses"]["200"]["content"] = {"text/html": {"schema": {"type": "string"}}}
    post = _operation("Do what a one-click link says", None, None, None, 200, None,
                      [404, 409, 410], LINK_DESCRIPTION + " HTML, or JSON with "
                      "`Accept: application/json`.")
    post["responses"]["200"]["content"] = {
        "text/html": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object", "properties": {
            "action": {"type": "string"}, "done": {"type": "boolean"},
            "message": {"type": "string"},
            "notification": {"$ref": "#/components/schemas/Notification"},
            "saved_search": {"$ref": "#/components/schemas/SavedSearch"},
            "preferences": {"$ref": "#/components/schemas/EmailPreferences"}}}},
    }
    return {"get": get, "post": post}


def _feed_operation(summary, query, description):
    """A GET answering `text/calendar` (200, or 304 for a matching If-None-Match)."""
    errors = [] if query is not None else [404]
    operation = _operation(summary, None, None, query, 200, None, errors, description)
    operation["responses"]["200"]["content"] = {
        "text/calendar": {"schema": {"type": "string"}}}
    operation["responses"]["200"]["headers"] = {"ETag": {"schema": {"type": "string"}}}
    operation["responses"]["304"] = {"description": "Not modified (If-None-Match)"}
    operation.setdefault("parameters", []).append({
        "name": "If-None-Match", "in": "header", "required": False,
        "schema": {"type": "string"}})
    return operation


def _operation(summary, auth, body, query, status, resource, errors, description):
    # 400, 414 and 431 can come from the HTTP server on any route, before the route runs
    codes = set(errors) | {400, 414, 431, 503}
    if body is not None:
        codes |= {400, 413, 422}
    if query is not None:
        codes.add(422)
    if auth:
        codes.add(401)
    if auth == "admin":
        codes.add(403)
    responses = {str(code): {"$ref": f"#/components/responses/{ERRORS[code][0]}"}
                 for code in sorted(codes)}
    success = {"description": summary}
    if resource is not None:
        success["content"] = {"application/json": {"schema": resource}}
    elif status != 204:
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses[str(status)] = success
    operation = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if auth:
        operation["security"] = [{"bearerAuth": []}]
    if body is not None:
        operation["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": body}},
        }
    if query is not None:
        operation["parameters"] = [{"in": "query", "schema": query}]
    return operation


IDEMPOTENCY_DESCRIPTION = """Optional, 1 to 128 printable ASCII characters (not starting
with a space). A retry with the same key by the same caller (the token's account, or
without a valid token the client address) within 24 hours gets the first response again,
same status and body, with `Idempotent-Replayed: true`, and changes nothing. The same key
with another method, path or body: 422 naming `Idempotency-Key`. While the first request
with the key still runs: 409. Answers 401, 429 and 5xx are not kept: a retry runs the
request again, and a create whose outcome was unknown (a 503 after the command was done)
finds the resource it made instead of making a second one."""


def _idempotent(operation):
    """Every POST takes Idempotency-Key (API.md v1.1)."""
    operation.setdefault("parameters", []).append({
        "name": IDEMPOTENCY_HEADER, "in": "header", "required": False,
        "description": IDEMPOTENCY_DESCRIPTION,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128,
                   "pattern": f"^{IDEMPOTENCY_KEY.pattern}$"},
    })
    for code in (409, 422):
        operation["responses"].setdefault(
            str(code), {"$ref": f"#/components/responses/{ERRORS[code][0]}"})
    operation["responses"] = dict(sorted(operation["responses"].items()))


def build():
    spec = APISpec(
        title="EventPost API", version="1.0.0", openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()], info={"description": DESCRIPTION},
    )
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for name, schema in [
        ("User", schemas.User), ("Token", schemas.Token), ("Event", schemas.Event),
        ("Notification", schemas.Notification), ("EventPage", schemas.EventPage),
        ("NotificationPage", schemas.NotificationPage), ("Error", schemas.Error),
        ("Health", schemas.Health), ("SavedSearch", schemas.SavedSearch),
        ("SavedSearchPage", schemas.SavedSearchPage), ("Series", schemas.Series),
        ("EmailPreferences", schemas.EmailPreferences),
    ]:
        spec.components.schema(name, schema=schema)
    for code, (name, description) in ERRORS.items():
        response = {"description": description,
                    "content": {"application/json": {"schema": "Error"}}}
        if code == 429:
            response["headers"] = {"Retry-After": {
                "description": "Seconds to wait.", "schema": {"type": "integer"}}}
        spec.components.response(name, response)

    paths = {}
    for method, path, *details in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(*details)
    paths["/events.ics"] = {"get": _feed_operation("Search events, as a calendar feed",
                                                   schemas.EventFeed, FEED_DESCRIPTION)}
    paths["/links/{token}"] = _link_operations()
    paths["/users/me/calendar"] = {"post": _operation(
        "A new secret URL of the caller's calendar feed", "user", None, None, 201,
        schemas.CalendarFeedUrl, [], MY_FEED_DESCRIPTION)}
    paths["/calendar/{token}.ics"] = {"get": _feed_operation(
        "A user's calendar feed (the token is the key: no auth header)", None,
        USER_FEED_DESCRIPTION)}
    for operations in paths.values():
        if "post" in operations:
            _idempotent(operations["post"])
    for path, operations in paths.items():
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", path)
        ]
        spec.path(path=path, operations=operations, parameters=parameters or None)
    for path, item in web.OPENAPI_PATHS.items():  # the web app's page and files
        spec.path(path=path, operations={"get": item["get"]}, parameters=item.get("parameters"))
    return spec


@lru_cache(maxsize=1)
def document():
    """The document as a dict (built once: it never changes while running)."""
    return build().to_dict()
