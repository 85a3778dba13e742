"""The gateway: API.md's routes, each one check -> one read or RPC call -> one JSON answer.

Hot reads (an event, a search, the caller's account) come from the in-memory read
models (read_models.py, kept current by feed.py); a read they cannot answer, and
every command, goes over RPC, and a command's reply updates the read models at once
so the caller reads their own write. HTTP mechanics (bodies, errors, auth) live in
http.py, RPC timeouts in rpc.py, input shapes in schemas.py. The backing services'
signatures are docs/contracts.md.
"""
import json
import logging

import eventlet
from nameko.dependency_providers import Config

import bus.reliable  # noqa: F401  nameko 2.14 fixes: a broker restart must not end the service
from bus import links, times
from bus.config import public_url, setting
from bus.consul import ConsulRegistration
from bus.errors import NotFound, Unavailable
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.messages import utc_now
from services.gateway import calendar, link_pages, openapi, web
from services.gateway.feed import ReadModels
from services.gateway.http import (
    Auth,
    WorkerPool,
    command_id,
    error_body,
    http,
    idempotent,
    json_body_response,
)
from services.gateway.read_models import GONE
from services.gateway.rpc import TimedRpcProxy
from services.gateway.schemas import (
    PAGE_LIMIT,
    Credentials,
    EmailAddress,
    EmailPreferenceChanges,
    EventChanges,
    EventCreate,
    EventFeed,
    EventSearch,
    SeriesChanges,
    NotificationChanges,
    NotificationCreate,
    NotificationFilter,
    PasswordChange,
    Registration,
    SavedSearchCreate,
    SavedSearchFilter,
    Snooze,
    load,
    load_query,
)

log = logging.getLogger(__name__)

# /health must answer fast even when everything behind it is down.
HEALTH_TIMEOUT = 2.0


# the web app at / (web.py); imported as web.WebApp, since `nameko run` would take a
# WebApp in this module for a second service
class GatewayService(web.WebApp):
    name = "gateway"

    context = CallContext()
    heap = SettledHeap()
    config = Config()
    consul = ConsulRegistration(address_setting="WEB_SERVER_ADDRESS")
    workers = WorkerPool()
    read_models = ReadModels()
    auth = Auth()
    users = TimedRpcProxy("users")
    events = TimedRpcProxy("events")
    search = TimedRpcProxy("search")
    notifications = TimedRpcProxy("notifications")
    mailer = TimedRpcProxy("mailer")
    alerts = TimedRpcProxy("alerts")

    # --- operations ---------------------------------------------------------------

    @http("GET", "/health")
    def health(self, request):
        backing = {
            "users": self.users, "events": self.events, "search": self.search,
            "notifications": self.notifications, "mailer": self.mailer,
            "alerts": self.alerts,
        }
        checks = {name: eventlet.spawn(_health_of, name, proxy) for name, proxy in backing.items()}
        services = {name: check.wait() for name, check in checks.items()}
        failing = sorted(name for name, state in services.items() if state != "ok")
        if not failing:
            return {"status": "ok", "services": services}
        message = f"Not answering: {', '.join(failing)}."
        return 503, {
            "status": "unavailable", "services": services,
            **error_body("unavailable", message, {"services": failing}),
        }

    @http("GET", "/openapi.json")
    def openapi_document(self, request):
        return openapi.document()

    # --- accounts -----------------------------------------------------------------

    @http("POST", "/users")
    @idempotent
    def register(self, request, body):
        user = self.users.register(**load(Registration, body))
        self.read_models.accounts.apply(user)
        return 201, public_user(user)

    @http("POST", "/auth/token")
    @idempotent
    def issue_token(self, request, body):
        # the client's address: login throttling counts failures per name and address
        token = self.users.authenticate(**load(Credentials, body), client=request.remote_addr)
        return 200, {"Cache-Control": "no-store"}, token

    @http("GET", "/users/me")
    def get_me(self, request):
        return public_user(self.auth.user(request))

    @http("PATCH", "/users/me")
    def change_email(self, request, body):
        user = self.auth.user(request)
        changed = self.users.change_email(user["id"], load(EmailAddress, body)["email"])
        self.read_models.accounts.apply(changed)
        return public_user(changed)

    @http("POST", "/users/me/emails")
    @idempotent
    def add_email(self, request, body):
        user = self.auth.user(request)
        changed = self.users.add_email(user["id"], load(EmailAddress, body)["email"])
        self.read_models.accounts.apply(changed)
        return 201, public_user(changed)

    @http("POST", "/users/me/password")
    @idempotent
    def change_password(self, request, body):
        user = self.auth.user(request)
        changed = self.users.change_password(user["id"], **load(PasswordChange, body))
        # this process refuses older tokens at once; the others on user_password_changed
        self.read_models.accounts.apply(changed)

    @http("DELETE", "/users/me/emails/<path:email>")  # "/" is legal in an email
    def remove_email(self, request, email):
        user = self.auth.user(request)
        self.read_models.accounts.apply(self.users.remove_email(user["id"], email))

    @http("DELETE", "/users/me")
    def delete_me(self, request):
        user = self.auth.user(request)
        self.users.delete(user["id"])
        self.read_models.accounts.remove(user["id"])  # its tokens stop working here at once

    @http("GET", "/users/me/email-preferences")
    def get_email_preferences(self, request):
        user = self.auth.user(request)
        return self.notifications.email_preferences(user["id"])

    @http("PATCH", "/users/me/email-preferences")
    def change_email_preferences(self, request, body):
        user = self.auth.user(request)
        return self.notifications.change_email_preferences(
            user["id"], load(EmailPreferenceChanges, body))

    @http("POST", "/users/me/calendar", body="optional")
    @idempotent
    def new_calendar_feed(self, request, body):
        user = self.auth.user(request)
        token = self.notifications.new_calendar_feed(user["id"])
        return 201, {"Cache-Control": "no-store"}, {
            "url": f"{public_url(self.config)}/calendar/{token}.ics"}

    @http("GET", "/calendar/<token>.ics")
    def calendar_feed(self, request, token):
        """The user's reminders' events; no auth header: the token is the key."""
        feed = self.notifications.calendar_feed(token)
        since = times.shift(utc_now(), -calendar.FEED_PAST)
        events, alarms = {}, {}
        for reminder in feed["reminders"]:
            event_id = reminder["event_id"]
            if event_id not in events:
                events[event_id] = self._event_or_none(event_id)
            if reminder["status"] == "scheduled":
                alarms.setdefault(event_id, []).append((reminder["remind_at"],
                                                        reminder["subject"]))
        shown = sorted((e for e in events.values()
                        if e is not None and times.read(e["starts_at"]) >= since),
                       key=lambda e: (e["starts_at"], e["id"]))
        return calendar.response(request, calendar.render(shown, "EventPost reminders",
                                                          alarms=alarms))

    def _event_or_none(self, event_id):
        """The event from the read model, else the write side; None once deleted."""
        body = self.read_models.events.get(event_id)
        if body is GONE:
            return None
        if body is not None:
            return json.loads(body)
        try:
            return self.events.get(event_id)
        except NotFound:
            return None

    # --- one-click links in emails (bus.links, link_pages.py) ----------------------

    @http("GET", "/links/<token>")
    def link_page(self, request, token):
        link = links.verify(setting(self.config, "JWT_SECRET"), token, utc_now())
        if link["act"] in links.NOTICE_ACTIONS:
            preferences = self.notifications.email_preferences(link["sub"])
            return link_pages.confirm_notices(self.web.headers, link, preferences,
                                              request.path)
        if link["act"] in links.ALERT_ACTIONS:
            found = self.alerts.get(link["sub"], link["tgt"])
            return link_pages.confirm_alert(self.web.headers, link, found, request.path)
        reminder = self.notifications.get(link["sub"], link["tgt"])
        return link_pages.confirm(self.web.headers, link, reminder, request.path)

    @http("POST", "/links/<token>", body="ignored")
    @idempotent
    def follow_link(self, request, token):
        link = links.verify(setting(self.config, "JWT_SECRET"), token, utc_now())
        wants_json = request.accept_mimetypes.best == "application/json"
        if link["act"] in links.NOTICE_ACTIONS:
            result = self.notifications.stop_notices(link["sub"])
            return link_pages.stop_outcome(self.web.headers, link, result, wants_json)
        if link["act"] in links.ALERT_ACTIONS:
            result = self.alerts.follow_link(link["sub"], link["tgt"], link["act"])
            return link_pages.stop_outcome(self.web.headers, link, result, wants_json)
        result = self.notifications.follow_link(link["sub"], link["tgt"], link["act"],
                                                link.get("arm"))
        return link_pages.outcome(self.web.headers, link, result, wants_json)

    # --- events -------------------------------------------------------------------

    @http("GET", "/events")
    def search_events(self, request):
        query = load_query(EventSearch, request.args)
        body = self.read_models.events.search(query)
        if body is None:  # beyond what this process holds: the search service's read model
            return self.search.search(query)
        return json_body_response(body)

    @http("GET", "/events.ics")
    def events_feed(self, request):
        query = load_query(EventFeed, request.args)
        return calendar.response(request, calendar.render(self._find_events(query),
                                                          "EventPost"))

    def _find_events(self, query):
        """Every event a search finds, up to its ``limit`` (which may pass a page's),
        page by page from the read model or, beyond it, from the search service."""
        wanted, found, cursor = query["limit"], [], None
        while len(found) < wanted:
            page = dict(query, limit=min(PAGE_LIMIT, wanted - len(found)))
            if cursor is not None:
                page["cursor"] = cursor
            body = self.read_models.events.search(page)
            answer = json.loads(body) if body is not None else self.search.search(page)
            found += answer["items"]
            cursor = answer["next_cursor"]
            if cursor is None:
                break
        return found

    @http("GET", "/events/<event_id>")
    def get_event(self, request, event_id):
        body = self.read_models.events.get(event_id)
        if body is GONE:
            raise NotFound("No such event.")
        if body is None:  # not held here (yet): the write side knows
            return self.events.get(event_id)
        return json_body_response(body)

    @http("POST", "/events")
    @idempotent
    def create_event(self, request, body):
        self.auth.admin(request)
        fields = load(EventCreate, body)
        if fields.get("recurrence") is None:
            event = self.events.create(fields, **command_id(request))
            self.read_models.events.apply(event)
            return 201, event
        # a series: every occurrence is searchable here at once (the reply carries them)
        occurrences = self.events.create_series(fields, **command_id(request))
        for event in occurrences:
            self.read_models.events.apply(event)
        return 201, occurrences[0]

    @http("GET", "/series/<series_id>")
    def get_series(self, request, series_id):
        return self.events.get_series(series_id)

    @http("PATCH", "/series/<series_id>")
    def update_series(self, request, series_id, body):
        self.auth.admin(request)
        result = self.events.update_series(series_id, load(SeriesChanges, body))
        for event in result["changed"]:
            self.read_models.events.apply(event)
        return result["series"]

    @http("DELETE", "/series/<series_id>")
    def delete_series(self, request, series_id):
        self.auth.admin(request)
        for event_id in self.events.delete_series(series_id):
            self.read_models.events.remove(event_id)

    @http("PATCH", "/events/<event_id>")
    def update_event(self, request, event_id, body):
        self.auth.admin(request)
        event = self.events.update(event_id, load(EventChanges, body))
        self.read_models.events.apply(event)
        return event

    @http("DELETE", "/events/<event_id>")
    def delete_event(self, request, event_id):
        self.auth.admin(request)
        self.events.delete(event_id)
        self.read_models.events.remove(event_id)

    # --- notifications ------------------------------------------------------------

    @http("POST", "/notifications")
    @idempotent
    def create_notification(self, request, body):
        user = self.auth.user(request)
        return 201, self.notifications.create(user, load(NotificationCreate, body),
                                              **command_id(request))

    @http("GET", "/notifications")
    def list_notifications(self, request):
        user = self.auth.user(request)
        filters = load_query(NotificationFilter, request.args)
        return self.notifications.list(user["id"], filters)

    @http("GET", "/notifications/<notification_id>")
    def get_notification(self, request, notification_id):
        user = self.auth.user(request)
        return self.notifications.get(user["id"], notification_id)

    @http("PATCH", "/notifications/<notification_id>")
    def update_notification(self, request, notification_id, body):
        user = self.auth.user(request)
        changes = load(NotificationChanges, body)
        return self.notifications.update(user, notification_id, changes)

    @http("POST", "/notifications/<notification_id>/snooze")
    @idempotent
    def snooze_notification(self, request, notification_id, body):
        user = self.auth.user(request)
        minutes = load(Snooze, body)["minutes"]
        return self.notifications.snooze(user["id"], notification_id, minutes)

    @http("DELETE", "/notifications/<notification_id>")
    def delete_notification(self, request, notification_id):
        user = self.auth.user(request)
        self.notifications.delete(user["id"], notification_id)

    # --- saved searches and alerts ------------------------------------------------

    @http("POST", "/saved-searches")
    @idempotent
    def create_saved_search(self, request, body):
        user = self.auth.user(request)
        return 201, self.alerts.create(user, load(SavedSearchCreate, body),
                                       **command_id(request))

    @http("GET", "/saved-searches")
    def list_saved_searches(self, request):
        user = self.auth.user(request)
        return self.alerts.list(user["id"], load_query(SavedSearchFilter, request.args))

    @http("DELETE", "/saved-searches/<saved_search_id>")
    def delete_saved_search(self, request, saved_search_id):
        user = self.auth.user(request)
        self.alerts.delete(user["id"], saved_search_id)


def public_user(user):
    """The user resource as API.md shows it: without what only the gateway checks."""
    return {name: value for name, value in user.items() if name != "tokens_valid_after"}


def _health_of(name, proxy):
    try:
        answer = proxy.within(HEALTH_TIMEOUT).health()
    except Unavailable:
        return "unavailable"
    except Exception:  # a service that answers with an error is up but not healthy
        log.exception("health check of %s failed", name)
        return "error"
    return "ok" if answer == "ok" else "error"
