import uuid

import pytest

from services.users import storage


@pytest.fixture
def config(mongo_uri):
    return {
        "MONGO_URI": mongo_uri,
        "MONGO_DATABASE_PREFIX": f"u{uuid.uuid4().hex[:8]}_",
        "JWT_SECRET": "unit-secret-" + "y" * 32,
        "ACCESS_TOKEN_TTL": "900",  # config.yml values arrive as strings
    }


@pytest.fixture
def db(new_database):
    return new_database("users", prepare=storage.ensure_indexes)
