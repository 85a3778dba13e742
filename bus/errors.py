"""Typed errors that survive RPC.

A service raises one of these; nameko serialises it with its args and, because each
class is registered with ``deserialize_to_instance``, the caller (the gateway) gets
the same class back and maps it to API.md's status and error code.
"""
import json

from marshmallow import ValidationError as FieldError
from nameko.exceptions import deserialize_to_instance


class DomainError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message="", details=None):
        # nameko stringifies every non-string arg it sends, so details travel as JSON
        if isinstance(details, str):
            details = json.loads(details)
        self.message = message
        self.details = details or {}
        super().__init__(message, json.dumps(self.details, default=str))


@deserialize_to_instance
class BadRequest(DomainError):
    status, code = 400, "bad_request"


@deserialize_to_instance
class Unauthorized(DomainError):
    status, code = 401, "unauthorized"


@deserialize_to_instance
class Forbidden(DomainError):
    status, code = 403, "forbidden"


@deserialize_to_instance
class NotFound(DomainError):
    status, code = 404, "not_found"


@deserialize_to_instance
class Conflict(DomainError):
    status, code = 409, "conflict"


@deserialize_to_instance
class Gone(DomainError):
    status, code = 410, "gone"


@deserialize_to_instance
class ValidationError(DomainError):
    """``details`` maps each bad field to a list of messages."""

    status, code = 422, "validation_error"

    def __init__(self, details=None, message="The request has invalid fields."):
        # args order matches how nameko rebuilds it: cls(*exc_args)
        if isinstance(details, str) and isinstance(message, str) and message.startswith("{"):
            message, details = details, message  # rebuilt from RPC: (message, details)
        super().__init__(message, details)


@deserialize_to_instance
class RateLimited(DomainError):
    status, code = 429, "rate_limited"

    def __init__(self, message="Too many attempts.", details=None):
        super().__init__(message, details)
        self.retry_after = int(self.details.get("retry_after", 60))


@deserialize_to_instance
class Unavailable(DomainError):
    status, code = 503, "unavailable"


def checked(schema, data):
    """A service's re-check of its input: ``schema.load(data)``, or ValidationError
    naming each bad field (``{"_schema": ...}`` for anything but an object)."""
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Expected an object."]})
    try:
        return schema.load(data)
    except FieldError as error:
        raise validation_error(error) from None


def validation_error(marshmallow_error):
    """Turn a marshmallow ValidationError into ours, one list of messages per field."""
    messages = marshmallow_error.messages
    if not isinstance(messages, dict):
        messages = {"_schema": messages}
    return ValidationError(_flatten(messages))


def _flatten(messages, prefix=""):
    flat = {}
    for field, value in messages.items():
        name = f"{prefix}{field}"
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return flat
