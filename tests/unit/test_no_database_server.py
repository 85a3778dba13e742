"""The unit layer runs without a database server (issue 9): asking for one fails the
test with where it belongs, unless --real-databases checks the fakes on the server."""
import pytest


def test_a_unit_test_that_asks_for_a_database_server_is_refused(request):
    if request.config.getoption("real_databases"):
        pytest.skip("--real-databases gives the unit tests the server")
    for fixture in ("mongo_uri", "new_database"):
        with pytest.raises(pytest.fail.Exception, match="belongs in tests/integration"):
            request.getfixturevalue(fixture)
