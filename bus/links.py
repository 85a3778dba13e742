"""One-click links in emails (API.md v1.1): signed tokens that do one thing to one
resource, for 30 days.

A token is an HS256 JWT signed with ``JWT_SECRET`` (the mailer signs, the gateway
checks) whose audience is ``eventpost-link``, so it can never pass as an access token
and an access token never passes as a link. Its claims: ``act`` (one of ACTIONS),
``sub`` (the user), ``tgt`` (the reminder, the saved search, or for ``stop_notices``
the user again), ``arm`` (the reminder's arm
when the email was written: a snooze link acts once, as the reminder it was sent for)
and ``exp``. A bad signature or a malformed token is NotFound (404, no hint about
anyone's data); an expired one is Gone (410).
"""
from datetime import timedelta

import jwt

from bus.errors import Gone, NotFound

AUDIENCE = "eventpost-link"
LIFETIME = timedelta(days=30)
# action -> what the link's page says it will do
ACTIONS = {
    "snooze_hour": "Snooze this reminder for 1 hour",
    "snooze_day": "Snooze this reminder for 1 day",
    "cancel": "Cancel this reminder",
    "stop_alert": "Stop this saved search",
    "stop_notices": "Stop emails about cancelled events",
}
REMINDER_ACTIONS = ("snooze_hour", "snooze_day", "cancel")  # every reminder email's links
ALERT_ACTIONS = ("stop_alert",)  # every alert email's link (its saved search: ``tgt``)
NOTICE_ACTIONS = ("stop_notices",)  # every cancellation notice's link (``tgt``: the user)
MAX_TOKEN_LENGTH = 1000


def sign(secret, action, user_id, target_id, now, arm=None):
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    claims = {"aud": AUDIENCE, "act": action, "sub": user_id, "tgt": target_id,
              "arm": arm, "iat": now, "exp": now + LIFETIME}
    return jwt.encode(claims, secret, algorithm="HS256")


def url(public_url, token):
    return f"{public_url}/links/{token}"


def verify(secret, token, now):
    """The claims of a token this system signed; NotFound or Gone otherwise."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
        raise NotFound("No such link.")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE,
                            options={"require": ["act", "sub", "tgt", "exp"],
                                     "verify_exp": False})
    except jwt.InvalidTokenError:
        raise NotFound("No such link.") from None
    if claims["act"] not in ACTIONS or not all(
            isinstance(claims[name], str) for name in ("sub", "tgt")):
        raise NotFound("No such link.")
    if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now.timestamp():
        raise Gone("This link has expired; links work for 30 days.")
    return claims
