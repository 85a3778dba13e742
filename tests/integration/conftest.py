"""Fixtures the integration tests of more than one service share."""
import pytest

from tests.integration.notifications.support import Inbox


@pytest.fixture
def inbox():
    """A real SMTP server (aiosmtpd) on a free loopback port, recording what it receives."""
    server = Inbox().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_config(service_config, inbox):
    """``service_config`` for services that mail to ``inbox``."""
    return {**service_config, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": inbox.port,
            "MAILER_LEASE_SECONDS": 5}
