import json
import logging

import marshmallow
import pytest
from nameko.exceptions import deserialize, serialize

from bus import errors
from bus.logs import CallContextFilter, JsonFormatter
from bus.messages import DATA_FIELDS, SUBSCRIPTIONS, iso, new_message


def test_every_message_carries_the_envelope_fields():
    message = new_message("users", "user_deleted", "u1", 3, user_id="u1")
    assert message["event_type"] == "user_deleted"
    assert message["aggregate_id"] == "u1"
    assert message["version"] == 3
    assert message["occurred_at"].endswith("Z")
    assert len(message["event_id"]) == 32
    assert new_message("users", "user_deleted", "u1", 3, user_id="u1")["event_id"] != (
        message["event_id"]
    )


def test_a_message_with_other_data_than_its_contract_is_refused():
    with pytest.raises(ValueError):
        new_message("users", "user_deleted", "u1", 1, user="u1")


def test_every_subscription_is_a_declared_message_type():
    assert set(SUBSCRIPTIONS) <= set(DATA_FIELDS)


def test_iso_is_utc_with_z():
    from datetime import datetime, timedelta, timezone

    paris = timezone(timedelta(hours=1))
    assert iso(datetime(2026, 12, 5, 20, 30, tzinfo=paris)) == "2026-12-05T19:30:00Z"
    assert iso(datetime(2026, 12, 5, 19, 30)) == "2026-12-05T19:30:00Z"


@pytest.mark.parametrize(
    "error, status, code",
    [
        (errors.NotFound("no such user"), 404, "not_found"),
        (errors.Conflict("taken", {"email": ["taken"]}), 409, "conflict"),
        (errors.ValidationError({"email": ["bad"]}), 422, "validation_error"),
        (errors.Unauthorized("bad token"), 401, "unauthorized"),
        (errors.RateLimited("slow down", {"retry_after": 30}), 429, "rate_limited"),
    ],
)
def test_errors_come_back_from_rpc_as_the_same_class(error, status, code):
    again = deserialize(serialize(error))
    assert type(again) is type(error)
    assert (again.status, again.code) == (status, code)
    assert again.message == error.message
    assert again.details == json.loads(json.dumps(error.details, default=str))


def test_rate_limited_keeps_retry_after_through_rpc():
    again = deserialize(serialize(errors.RateLimited("slow", {"retry_after": 42})))
    assert again.retry_after == 42


def test_marshmallow_errors_name_each_field_with_a_list_of_messages():
    class Body(marshmallow.Schema):
        email = marshmallow.fields.Email(required=True)
        place = marshmallow.fields.Nested(
            marshmallow.Schema.from_dict({"lat": marshmallow.fields.Float(required=True)})
        )

    with pytest.raises(marshmallow.ValidationError) as caught:
        Body().load({"email": "nope", "place": {}})
    error = errors.validation_error(caught.value)
    assert set(error.details) == {"email", "place.lat"}
    assert all(isinstance(v, list) and v for v in error.details.values())


def test_json_logs_carry_service_and_call_id():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    CallContextFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello there"
    assert {"service", "call_id", "time", "level"} <= set(line)
