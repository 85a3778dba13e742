import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.mailer.service import MailerService
from services.notifications.service import NotificationsService

from .support import publish_event, wait_until


@pytest.fixture
def config(smtp_config):
    return smtp_config


@pytest.fixture
def system(runner_factory, config):
    """The notifications and mailer services, each in its own container."""
    runner = runner_factory(config, NotificationsService, MailerService)
    runner.start()
    return runner


@pytest.fixture
def notifications(system, config):
    with ServiceRpcProxy("notifications", config, timeout=20) as proxy:
        yield proxy


@pytest.fixture
def notifications_db(service_database, config):
    return service_database("notifications", config)


@pytest.fixture
def known_event(config, notifications_db):
    """Publish ``event_created`` and wait until the notifications service has it."""
    def known(event):
        publish_event(config, "event_created", event)
        wait_until(lambda: notifications_db.events.find_one({"_id": event["id"]}))
        return event

    return known
