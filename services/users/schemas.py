"""The user resource as API.md returns it, and the input rules of the users domain.

The gateway checks shape too, but RPC callers are not trusted: every string field is
loaded here, so a dict such as ``{"$ne": ""}`` becomes a ValidationError naming the
field and never reaches a Mongo query.
"""
from marshmallow import Schema, fields, validate, validates_schema
from marshmallow import ValidationError as MarshmallowError

from bus import fields as rules
from bus.errors import validation_error
from bus.messages import iso

# The rules of each field: bus.fields.
PASSWORD = validate.Length(*rules.PASSWORD)


class _Storable:
    """Refuses lone surrogates: JSON allows them, but UTF-8 (argon2, BSON) cannot encode them."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise MarshmallowError("Not valid UTF-8 text.") from None
        return text


class Text(_Storable, fields.String):
    pass


class User(Schema):
    id = fields.String(attribute="_id")
    username = fields.String()
    email = fields.String()
    secondary_emails = fields.List(fields.String())
    role = fields.String()
    created_at = fields.Function(lambda user: iso(user["created_at"]))
    # Counts the account's changes: read models keep the newest (services/gateway).
    version = fields.Integer()
    # Tokens issued before this moment (the last password change) no longer work; the
    # gateway checks it and does not show it.
    tokens_valid_after = fields.Function(lambda user: iso(user.get("tokens_valid_after")))


class Registration(Schema):
    username = rules.username(required=True)
    email = rules.Email(required=True)
    password = rules.Secret(rules.PASSWORD, required=True)


class PasswordChange(Schema):
    current_password = Text(required=True, validate=validate.Length(max=PASSWORD.max))
    new_password = Text(required=True, validate=PASSWORD)


class NewEmail(Schema):
    email = rules.Email(required=True)


class KnownEmail(Schema):
    """An email that must match a stored one: anything else is simply not found."""

    email = Text(required=True)


class Login(Schema):
    # Any string may be tried (a wrong one is just wrong credentials); the cap keeps
    # an attacker from making argon2 hash megabytes.
    password = Text(required=True, validate=validate.Length(max=PASSWORD.max))
    username = Text(allow_none=True)
    email = Text(allow_none=True)
    # the client's address as the gateway saw it (IPv4, IPv6, or None)
    client = Text(allow_none=True, validate=validate.Length(max=100))

    @validates_schema
    def one_identifier(self, data, **kwargs):
        if (data.get("username") is None) == (data.get("email") is None):
            raise MarshmallowError("Give either a username or an email.", "username")


def load(schema, data):
    """``data`` loaded by ``schema``, or bus.errors.ValidationError."""
    try:
        return schema.load(data)
    except MarshmallowError as error:
        raise validation_error(error) from None


def dump_user(user):
    return User().dump(user)
