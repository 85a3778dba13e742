"""The pages behind the one-click links in emails (API.md v1.1, bus.links).

``GET /links/<token>`` says what the link will do, with one button; only the button's
``POST`` acts, so a mail scanner that follows links changes nothing. The pages are
plain HTML with the web app's stylesheet and its Content-Security-Policy (no script);
the POST answers JSON instead when asked with ``Accept: application/json``. The
one-click unsubscribe of RFC 8058 is the same POST (its form body is not read).
"""
import html

from werkzeug.wrappers import Response

from bus.links import ACTIONS

OUTCOMES = {
    ("snooze_hour", True): "Snoozed: the reminder will come again at {remind_at}.",
    ("snooze_day", True): "Snoozed: the reminder will come again at {remind_at}.",
    ("cancel", True): "Cancelled: this reminder will not be sent.",
    ("snooze_hour", False): "Nothing to do: this link was used already "
                            "(the reminder is {status}, due {remind_at}).",
    ("snooze_day", False): "Nothing to do: this link was used already "
                           "(the reminder is {status}, due {remind_at}).",
    ("cancel", False): "Nothing to do: this reminder was cancelled already.",
    ("stop_alert", True): "Stopped: this saved search sends no more alerts.",
    ("stop_alert", False): "Nothing to do: this saved search was stopped already.",
    ("stop_notices", True): "Stopped: no more emails about cancelled events. Turn them "
                            "back on under My account.",
    ("stop_notices", False): "Nothing to do: emails about cancelled events were stopped "
                             "already.",
}
NOTICES = ("You get an email when an event you set reminders for is cancelled. Without "
           "them, those reminders are still cancelled, and say so in My reminders.")


def confirm(headers, link, reminder, path):
    """The GET page: what the button will do, to which reminder."""
    return _page(headers, ACTIONS[link["act"]],
                 f"Reminder: {reminder['subject']} (due {reminder['remind_at']}, "
                 f"{reminder['status']}).", form=(path, ACTIONS[link["act"]]))


def outcome(headers, link, result, wants_json):
    """The POST's answer: what was done, or that nothing was left to do."""
    notification = result["notification"]
    message = OUTCOMES[link["act"], result["done"]].format(**notification)
    if wants_json:
        return {"action": link["act"], "done": result["done"], "message": message,
                "notification": notification}
    return _page(headers, ACTIONS[link["act"]], message)


def confirm_alert(headers, link, found, path):
    """The GET page of an alert email's stop link (alerts.get's ``{saved_search,
    stopped}``)."""
    saved = found["saved_search"]
    return confirm_stop(headers, link, found["stopped"],
                        f"Saved search: {saved['name']} ({saved['frequency']} alerts to "
                        f"{saved['email']}).", path)


def confirm_notices(headers, link, preferences, path):
    """The GET page of a cancellation notice's stop link (notifications.email_preferences)."""
    return confirm_stop(headers, link, not preferences["cancellation_notices"], NOTICES, path)


def confirm_stop(headers, link, stopped, text, path):
    """A stop link's GET page: ``text`` and the button; once stopped, says so, with none."""
    if stopped:
        return _page(headers, ACTIONS[link["act"]], OUTCOMES[link["act"], False])
    return _page(headers, ACTIONS[link["act"]], text, form=(path, ACTIONS[link["act"]]))


def stop_outcome(headers, link, result, wants_json):
    """A stop link's POST answer: ``result`` is ``{done, <what it stopped>}``."""
    message = OUTCOMES[link["act"], result["done"]]
    if wants_json:
        return {"action": link["act"], "message": message, **result}
    return _page(headers, ACTIONS[link["act"]], message)


def _page(headers, title, text, form=None):
    button = ""
    if form is not None:
        path, label = form
        button = (f'<form method="post" action="{html.escape(path, quote=True)}">'
                  f'<button type="submit">{html.escape(label)}</button></form>')
    body = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{html.escape(title)} - EventPost</title>'
            f'<link rel="stylesheet" href="/web/app.css"></head>'
            f'<body><main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{button}'
            f'<p><a href="/">EventPost</a></p></main></body></html>')
    return Response(body, headers={**headers, "Cache-Control": "no-store"},
                    content_type="text/html; charset=utf-8")
