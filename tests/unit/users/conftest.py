import uuid

import pytest

from bus.mongo import connect
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
def db(config):
    client, database = connect(config, "users")
    storage.ensure_indexes(database)
    yield database
    client.drop_database(database.name)
    client.close()
