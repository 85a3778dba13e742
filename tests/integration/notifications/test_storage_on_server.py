"""The reminder scheduler on a real SecantusDB database (no broker): instances racing
through their round trips to the server, and the commands an idle one sends it, counted
by a pymongo CommandListener."""
from datetime import timedelta

import eventlet
import pytest
from pymongo import MongoClient, monitoring

from services.notifications import handlers, scheduler, storage
from tests.unit.notifications import conftest as unit
from tests.unit.notifications.conftest import NOW, event, known
from tests.unit.notifications.test_scheduler import SETTINGS, schedule

pytestmark = pytest.mark.integration

# the unit layer's stand-ins for the Announcer, the outbox relay and the mailer's
# withdrawal, here on this module's databases
published, relayed, withdraw = unit.published, unit.relayed, unit.withdraw


@pytest.fixture
def db(new_database):
    return new_database("notifications", prepare=storage.ensure_indexes)


@pytest.fixture
def mailer_db(new_database):
    return new_database("mailer")


def test_competing_instances_hand_each_reminder_over_exactly_once(db, relayed, published,
                                                                 withdraw):
    known(db, event())
    made = [schedule(db, relayed, "2026-12-01T12:00:05Z") for _ in range(60)]
    at = NOW + timedelta(seconds=6)
    settings = scheduler.Settings(batch=10)
    pool = eventlet.GreenPool()
    list(pool.imap(lambda _: scheduler.claim_due(db, at, published, withdraw, relayed,
                                                 settings, clock=lambda: at), range(4)))
    keys = [item["send_key"] for item in published.reminders()]
    assert sorted(keys) == sorted(f"reminder:{m['id']}:1" for m in made)


class Queries(monitoring.CommandListener):
    """Counts the commands a client sends (what the idle scheduler costs)."""

    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def counted(db, mongo_uri):
    listener = Queries()
    client = MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener])
    yield client[db.name], listener
    client.close()


def test_when_nothing_is_due_a_tick_asks_the_database_nothing(counted, relayed, published,
                                                              withdraw):
    db, queries = counted
    known(db, event())
    clock = scheduler.Clock()
    clock.setup()
    ticks = [NOW + timedelta(seconds=s / 20) for s in range(200)]  # 10 s at 20 ticks/s
    queries.names.clear()
    for now in ticks:
        scheduler.tick(db, clock, now, published, withdraw, relayed, SETTINGS)
    # a look ahead every `horizon` seconds, a sweep every `sweep_every`
    expected = 10 / SETTINGS.horizon + 10 / SETTINGS.sweep_every
    assert len(queries.names) <= expected + 2, queries.names
    assert len(queries.names) / 10 <= 1.0  # well under 2 per second


def test_a_tick_sleeps_until_the_next_due_time_and_a_new_reminder_wakes_it(
        counted, relayed, published, withdraw):
    db, queries = counted
    known(db, event())
    schedule(db, relayed, "2026-12-01T12:00:01.500Z")
    clock = scheduler.Clock()
    clock.setup()
    scheduler.tick(db, clock, NOW, published, withdraw, relayed, SETTINGS)
    assert clock.next_due == handlers.parse_time("2026-12-01T12:00:01.500Z")
    queries.names.clear()
    scheduler.tick(db, clock, NOW + timedelta(seconds=1), published, withdraw, relayed,
                   SETTINGS)
    assert queries.names == []  # asleep
    scheduler.tick(db, clock, NOW + timedelta(seconds=1.5), published, withdraw, relayed,
                   SETTINGS)
    assert len(published.reminders()) == 1
    # created here, due sooner than anything known: wakes the clock for that time
    soon = schedule(db, relayed, "2026-12-01T12:00:01.800Z")
    clock.wake(handlers.parse_time(soon["remind_at"]))
    assert clock.claim_needed(NOW + timedelta(seconds=1.8))
    scheduler.tick(db, clock, NOW + timedelta(seconds=1.8), published, withdraw, relayed,
                   SETTINGS)
    assert len(published.reminders()) == 2
