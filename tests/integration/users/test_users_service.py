"""The users service in a real container: RPC over RabbitMQ, SecantusDB, published events.

Published messages are read from the consumers' own queues, which the service's
outbox declares at start-up (bus.messages.SUBSCRIPTIONS), so a test sees exactly
what the mailer and notifications services would receive.
"""

import jwt
import pytest

from bus.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationError
from bus.messages import queue_name
from services.users import handlers
from services.users.service import UsersService
from tests.support.queues import take
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"


@pytest.fixture
def users(service_proxy):
    return service_proxy(UsersService)


@pytest.fixture
def database(service_database):
    return service_database("users")


@pytest.fixture
def stored(database):
    return database.users


def published(config, event_type, consumer, count=1, timeout=10):
    """The next ``count`` messages in ``consumer``'s queue for ``users.<event_type>``."""
    return take(config, queue_name("users", event_type, consumer), count, timeout)


def test_health(users):
    assert users.health() == "ok"


def test_a_registration_reaches_the_mailer_once(users, service_config, stored, sweeps):
    user = users.register("ann", "Ann@Example.org", PASSWORD)
    assert user["username"] == "ann" and user["email"] == "Ann@Example.org"
    assert users.get(user["id"]) == user

    [message] = published(service_config, "user_registered", "mailer")
    assert message["event_type"] == "user_registered"
    assert message["aggregate_id"] == user["id"]
    assert message["version"] == 1
    assert message["data"] == {"user": user}
    assert PASSWORD not in str(message) and "argon2" not in str(message)
    # pulled once the broker confirmed, within the relay's PULL_DELAY
    assert wait_for(lambda: stored.find_one({"_id": user["id"]})["pending_events"] == [])
    sweeps.wait_for_a_whole_one()  # a sweep later, still one message
    assert published(service_config, "user_registered", "mailer", timeout=0) == []


def test_a_change_whose_publisher_died_is_published_by_the_sweeper(users, service_config,
                                                                   database):
    user_id = users.register("ann", "ann@example.org", PASSWORD)["id"]
    handlers.delete(database, user_id)  # a write whose worker died before publishing
    [deleted] = published(service_config, "user_deleted", "notifications", timeout=15)
    assert deleted["data"] == {"user_id": user_id}
    # the sweeper pulls the message off right after RabbitMQ confirms it
    assert wait_for(lambda: database.users.find_one({"_id": user_id})["pending_events"] == [],
                    timeout=5)


def test_domain_errors_arrive_as_typed_errors(users):
    user = users.register("ann", "ann@example.org", PASSWORD)

    with pytest.raises(Conflict) as taken:
        users.register("ann", "other@example.org", PASSWORD)
    assert list(taken.value.details) == ["username"]
    with pytest.raises(ValidationError) as injected:
        users.register({"$ne": ""}, "x@example.org", PASSWORD)
    assert list(injected.value.details) == ["username"]
    with pytest.raises(NotFound):
        users.get({"$ne": ""})
    with pytest.raises(ValidationError) as primary:
        users.remove_email(user["id"], "ann@example.org")
    assert "email" in primary.value.details


def test_login_token_lockout(users, service_config):
    user = users.register("ann", "ann@example.org", PASSWORD)

    token = users.authenticate(PASSWORD, email="ANN@example.org")
    claims = jwt.decode(token["access_token"], service_config["JWT_SECRET"], algorithms=["HS256"])
    assert (claims["sub"], claims["role"]) == (user["id"], "user")
    assert token["expires_in"] == 3600

    for _ in range(5):
        with pytest.raises(Unauthorized):
            users.authenticate("wrong password", username="ann", client="203.0.113.7")
    with pytest.raises(RateLimited) as locked:
        users.authenticate(PASSWORD, username="ann", client="203.0.113.7")
    assert 0 < locked.value.retry_after <= 900
    # the owner, from another address, is never refused
    assert users.authenticate(PASSWORD, username="ann", client="198.51.100.20")["access_token"]


def test_email_changes_and_deletion_reach_notifications(users, service_config, stored):
    user = users.register("ann", "ann@example.org", PASSWORD)
    users.add_email(user["id"], "ann@work.example.org")
    changed = users.change_email(user["id"], "ann@home.example.org")
    assert users.remove_email(user["id"], "Ann@Work.example.org")["secondary_emails"] == []
    assert users.delete(user["id"]) is None

    [email_changed] = published(service_config, "user_email_changed", "notifications")
    assert email_changed["version"] == 3
    assert email_changed["data"]["old_email"] == "ann@example.org"
    assert email_changed["data"]["new_email"] == "ann@home.example.org"
    assert email_changed["data"]["user"] == changed

    [email_removed] = published(service_config, "user_email_removed", "notifications")
    assert email_removed["version"] == 4
    assert email_removed["data"]["email"] == "ann@work.example.org"
    assert email_removed["data"]["user"]["secondary_emails"] == []

    [deleted] = published(service_config, "user_deleted", "notifications")
    assert (deleted["version"], deleted["data"]) == (5, {"user_id": user["id"]})
    # pulled once the broker confirmed, within the relay's PULL_DELAY
    assert wait_for(lambda: stored.find_one({"_id": user["id"]})["pending_events"] == [])

    with pytest.raises(NotFound):  # what the gateway asks on every request with the token
        users.get(user["id"])
    assert users.register("ann", "ann@example.org", PASSWORD)["id"] != user["id"]


def test_create_admin_creates_then_promotes(users, service_config):
    admin = users.create_admin("root", "root@example.org", PASSWORD)
    assert admin["role"] == "admin"
    [welcome] = published(service_config, "user_registered", "mailer")
    assert welcome["data"]["user"] == admin

    ann = users.register("ann", "ann@example.org", PASSWORD)
    promoted = users.create_admin("ann", "x@example.org", "whatever password")
    assert promoted == {**ann, "role": "admin", "version": 2}
    assert users.get(ann["id"])["role"] == "admin"
