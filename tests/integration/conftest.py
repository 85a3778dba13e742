"""Fixtures the integration tests of more than one service share."""
import pytest

from bus.outbox import Outbox
from tests.integration.notifications.support import Inbox
from tests.support.waiting import wait_for


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


class Sweeps:
    """How many outbox sweeps have finished in this process (the real sweeps run)."""

    def __init__(self):
        self.finished = 0

    def wait_for_a_whole_one(self, timeout=10):
        """Wait until a sweep that started after this call has finished: whatever a
        sweeper would republish is then published (and confirmed by the broker)."""
        started_before = self.finished + 1  # one may be running now
        assert wait_for(lambda: self.finished > started_before, timeout), \
            f"no outbox sweep finished within {timeout}s"


@pytest.fixture
def sweeps(monkeypatch):
    """Counts ``Outbox.sweep`` runs of every outbox in this test's containers."""
    counter = Sweeps()
    sweep = Outbox.sweep

    def counted(self):
        try:
            return sweep(self)
        finally:
            counter.finished += 1

    monkeypatch.setattr(Outbox, "sweep", counted)
    return counter
