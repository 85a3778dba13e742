"""The users domain on a real SecantusDB database: a race that the unique index decides."""
import eventlet
import pytest

from bus.errors import Conflict
from services.users import storage
from tests.unit.users.test_handlers import register

pytestmark = pytest.mark.integration


@pytest.fixture
def db(new_database):
    return new_database("users", prepare=storage.ensure_indexes)


def test_concurrent_registrations_of_one_username_have_one_winner(db):
    pool = eventlet.GreenPool()

    def attempt(n):
        try:
            return register(db, username="race", email=f"race{n}@example.org")
        except Conflict:
            return None

    results = list(pool.imap(attempt, range(4)))
    assert len([r for r in results if r is not None]) == 1
    assert db.users.count_documents({"username_key": "race"}) == 1
