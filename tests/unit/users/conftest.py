import pytest
from argon2 import PasswordHasher

from services.users import handlers, storage
from tests.support.fakes import FakeUsersStorage, in_memory


@pytest.fixture
def config():
    return {
        "JWT_SECRET": "unit-secret-" + "y" * 32,
        "ACCESS_TOKEN_TTL": "900",  # config.yml values arrive as strings
    }


@pytest.fixture
def db(request, monkeypatch):
    """The users storage in memory (tests.support.fakes); a test marked
    ``@pytest.mark.database`` gets a fresh database on the SecantusDB server instead."""
    if request.node.get_closest_marker("database"):
        return request.getfixturevalue("new_database")("users", prepare=storage.ensure_indexes)
    return in_memory(monkeypatch, handlers, FakeUsersStorage())


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch):
    """argon2 at its lowest cost: the same algorithm and format ($argon2id$), a
    millisecond per hash instead of ~100 ms (64 MiB, 3 passes). The service's own
    parameters are what the integration and e2e tests log in with."""
    monkeypatch.setattr(handlers, "_hasher",
                        PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    handlers._dummy_hash.cache_clear()  # made with the hasher in use
    yield
    handlers._dummy_hash.cache_clear()
