import pytest
from argon2 import PasswordHasher

from services.users import handlers
from tests.support.fakes import FakeUsersStorage, in_memory


@pytest.fixture
def config():
    return {
        "JWT_SECRET": "unit-secret-" + "y" * 32,
        "ACCESS_TOKEN_TTL": "900",  # config.yml values arrive as strings
    }


@pytest.fixture
def db(monkeypatch):
    """The users storage in memory (tests.support.fakes); the race that the unique index
    decides is in tests/integration/users/test_storage_on_server.py."""
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
