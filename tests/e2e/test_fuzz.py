"""schemathesis over /openapi.json: every operation, generated requests with a user's
and with an admin's token, against a system of its own (so what it creates, deletes
and locks out touches no other test). Bounded: a fixed seed and a fixed number of
examples per operation. Any 5xx, an undocumented status, content type or response
shape is a failure.

The operations that create accounts or check passwords cost an argon2 hash each in
the users service (~0.1 s idle, seconds on a loaded 2-core machine), which is why
every operation gets only a few examples (EXAMPLES).
"""
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import running_system
from tests.e2e.helpers import ClientAt, login, new_account

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
SEED = 20261202
EXAMPLES = 6
# Requests come from their own loopback address: login throttling counts per address.
FUZZ_ADDRESS = "127.0.0.9"


@pytest.fixture(scope="module")
def fuzzed_system(request, rabbit_manager, tmp_path_factory):
    with running_system(request, rabbit_manager, tmp_path_factory.mktemp("fuzz-var"),
                        name="fuzz", label="fuzz system", mongo_uri="") as running:
        yield running


@pytest.fixture(scope="module")
def client(fuzzed_system):
    with ClientAt(fuzzed_system.base_url, FUZZ_ADDRESS) as session:
        yield session


@pytest.fixture(scope="module")
def tokens(fuzzed_system, client):
    """Bearer headers of a user and of an admin made for the fuzzing alone."""
    account = new_account()
    assert client.post("/users", json=account).status_code == 201
    admin, password = fuzzed_system.create_admin()
    return {
        "user": login(client, account),
        "admin": login(client, {"username": admin["username"], "password": password}),
    }


FUZZING = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))


def fuzz(operation, headers, client):
    """Run ``operation``'s generated cases with ``headers``; what failed, as text."""

    @seed(SEED)
    @FUZZING
    @given(case=operation.as_strategy())
    def run(case):
        sent = dict(headers)
        if case.headers and "Authorization" in case.headers:
            sent.pop("Authorization")  # the generated one is what is under test
        case.call_and_validate(session=client, headers=sent, checks=CHECKS, timeout=30)

    try:
        run()
    except Exception as failure:  # schemathesis' failure report: kept whole
        return f"{operation.label}: {failure}"
    return None


@pytest.mark.slow  # a minute or two a role; more on a loaded machine
@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_operation_answers_as_documented(fuzzed_system, tokens, client, role):
    schema = schemathesis.openapi.from_url(fuzzed_system.base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    failures = [failed for operation in operations
                if (failed := fuzz(operation, tokens[role], client)) is not None]
    assert not failures, "\n\n".join(failures)
