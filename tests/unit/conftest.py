"""The unit layer runs without a database server: a handler's logic on the in-memory
fakes (tests/support/fakes.py). What needs the server (aggregation, races between round
trips, counting the commands it receives) is tested in tests/integration."""
import pytest


@pytest.fixture(scope="session")
def mongo_uri(request):
    """Refused, unless ``--real-databases`` asks to check the fakes against the server."""
    if not request.config.getoption("real_databases"):
        pytest.fail("a unit test asked for a database server (mongo_uri, new_database, "
                    "service_config): unit tests run on the in-memory fakes "
                    "(tests/support/fakes.py); a test that needs the server belongs in "
                    "tests/integration", pytrace=False)
    return request.getfixturevalue("database_server")
