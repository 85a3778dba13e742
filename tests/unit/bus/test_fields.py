"""bus.fields: one rule per field, the same in the gateway and in the services (issue 9),
and API.md v1.1's text rules."""
import pytest
from marshmallow import Schema

from bus import fields as rules
from services.events import schemas as events
from services.gateway import schemas as gateway
from services.notifications import schemas as notifications
from services.users import schemas as users


def bounds(field):
    """(min, max) of a field's length rule, or of its range."""
    for validator in field.validators:
        if hasattr(validator, "equal") and hasattr(validator, "max"):
            return validator.min, validator.max
    for validator in field.validators:
        if hasattr(validator, "min_inclusive"):
            return validator.min, validator.max
    return None


PAIRS = [  # (gateway schema, service schema, field)
    *[(gateway.EventCreate, events.EventFields, name)
      for name in ("title", "description", "timezone", "organizer")],
    *[(gateway.Place, events.Place, name) for name in ("name", "address", "lat", "lng")],
    *[(gateway.NotificationCreate, notifications.CreateFields, name)
      for name in ("event_id", "email", "subject", "message", "before_minutes")],
    (gateway.NotificationFilter, notifications.Filters, "event_id"),
    (gateway.NotificationFilter, notifications.Filters, "cursor"),
    (gateway.NotificationFilter, notifications.Filters, "limit"),
    *[(gateway.Registration, users.Registration, name)
      for name in ("username", "email", "password")],
    (gateway.EmailAddress, users.NewEmail, "email"),
]


@pytest.mark.parametrize("front, back, name", PAIRS)
def test_the_gateway_and_the_service_apply_the_same_bounds(front, back, name):
    gateway_field, service_field = front().fields[name], back().fields[name]
    assert bounds(gateway_field) is not None
    assert bounds(gateway_field) == bounds(service_field)


def test_topics_are_bounded_alike():
    front, back = gateway.EventCreate().fields["topics"], events.EventFields().fields["topics"]
    assert bounds(front) == bounds(back) == rules.TOPICS
    assert bounds(front.inner) == bounds(back.inner) == rules.TOPIC


def test_the_limits_api_md_states_and_the_ones_chosen_where_it_is_silent():
    assert rules.TITLE == (1, 120) and rules.DESCRIPTION == (0, 4000)
    assert rules.TOPIC == (1, 40) and rules.TOPICS == (1, 10)
    assert rules.PASSWORD == (8, 256) and rules.USERNAME == (3, 30)
    assert rules.SNOOZE_MINUTES == (1, 10080) and rules.LIMIT == (1, 100)
    assert rules.MESSAGE == (0, 4000) and rules.EMAIL_MAX == 254 and rules.EVENT_ID == (1, 200)


class Sample(Schema):
    title = rules.Text(rules.TITLE, blank=False)
    description = rules.Text(rules.DESCRIPTION, lines=True)
    topic = rules.Topic()
    password = rules.Secret(rules.PASSWORD)


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\tb", "a\x00b", "a\x1bb", "a\x7fb",
                                  "a\x85b", "a\x9fb", "a\u2028b", "a\u2029b", "a\ud800b"])
def test_single_line_text_takes_no_line_break_or_control_character(text):
    for name in ("title", "topic"):
        assert name in Sample().validate({name: text}), (name, repr(text))


def test_multi_line_text_takes_line_breaks_and_tabs_only():
    assert Sample().load({"description": "one\n\ttwo"}) == {"description": "one\n\ttwo"}
    for text in ("a\rb", "a\x00b", "a\x0bb", "a\x0cb", "a\x7fb", "a\x85b", "a\ud800b"):
        assert "description" in Sample().validate({"description": text}), repr(text)


def test_a_topic_with_a_line_break_is_refused_before_trimming_hides_it():
    assert "topic" in Sample().validate({"topic": "jazz\nblues"})
    assert Sample().load({"topic": " Jazz "}) == {"topic": "jazz"}


def test_passwords_take_any_valid_text_but_not_lone_surrogates():
    assert Sample().load({"password": "tab\there\nnewline"})["password"]
    assert "password" in Sample().validate({"password": "surrogate \ud800 here"})


def test_blank_titles_are_refused():
    assert "title" in Sample().validate({"title": "   "})
