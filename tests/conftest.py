"""Fixtures shared by every test layer.

Nameko needs eventlet's monkey-patching before anything else imports sockets.
Nameko's pytest plugin (``rabbit_config``, ``container_factory``, ``runner_factory``)
is registered by its package's entry point.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402  (must precede every other import)

import os  # noqa: E402
import signal  # noqa: E402
import traceback  # noqa: E402
import uuid  # noqa: E402
from contextlib import ExitStack  # noqa: E402

import greenlet  # noqa: E402
import pytest  # noqa: E402
from nameko.standalone.rpc import ServiceRpcProxy  # noqa: E402

from bus.mongo import connect  # noqa: E402
from tests.support.secantus import SecantusProcess  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--real-databases", action="store_true", dest="real_databases",
                     help="unit tests that default to the in-memory FakeDatabase "
                          "(tests.support.fakes.unit_database) use SecantusDB instead: "
                          "how the fake is checked against the server")


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """A test over its timeout fails, and the run goes on.

    pytest-timeout falls back to its thread method under eventlet (green threading
    does not see the main thread as main), which ends the whole run with os._exit,
    no summary and no report of the tests after it. Here SIGALRM fails the test in
    its own greenlet: raised there at once if the signal lands in it, otherwise
    thrown into it from the hub (which resumes where it was when the test next
    yields, as after any switch)."""
    if settings.method != "signal" or settings.timeout <= 0:
        return None
    test = greenlet.getcurrent()

    def on_alarm(signum, frame):
        stacks = "".join(traceback.format_stack(frame))
        failure = pytest.fail.Exception(
            f"Timeout >{settings.timeout}s\n(where the alarm found the process:)\n{stacks}")
        if greenlet.getcurrent() is test:
            raise failure
        test.throw(failure)

    def cancel():
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)

    item.cancel_timeout = cancel
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    return True


@pytest.fixture(scope="session")
def database_server(tmp_path_factory):
    """The URI of a real SecantusDB server over TCP, started for the session (or
    TEST_MONGO_URI, to test against MongoDB)."""
    if os.environ.get("TEST_MONGO_URI"):
        yield os.environ["TEST_MONGO_URI"]
        return
    server = SecantusProcess(tmp_path_factory.mktemp("secantus"))
    server.start()
    yield server.uri
    server.stop()


@pytest.fixture(scope="session")
def mongo_uri(database_server):
    """Where the tests' databases are (tests/unit/conftest.py refuses it to unit tests)."""
    return database_server


@pytest.fixture
def service_config(rabbit_config, mongo_uri):
    """Config for services under test: a fresh RabbitMQ vhost and fresh databases."""
    config = dict(rabbit_config)
    config.update(
        MONGO_URI=mongo_uri,
        MONGO_DATABASE_PREFIX=f"t{uuid.uuid4().hex[:8]}_",
        JWT_SECRET="test-secret-" + "x" * 32,
        ACCESS_TOKEN_TTL=3600,
        RPC_TIMEOUT=5,
        HANDLER_MAX_ATTEMPTS=3,
        HANDLER_RETRY_BASE_SECONDS=0.2,
        serializer="json",
    )
    return config


@pytest.fixture
def new_database(mongo_uri):
    """``new_database("events", prepare=storage.ensure_indexes)``: a fresh database of
    that service on the test server, prepared as the service prepares it at start,
    dropped after the test."""
    opened = []

    def open_database(service, prepare=None):
        config = {"MONGO_URI": mongo_uri, "MONGO_DATABASE_PREFIX": f"t{uuid.uuid4().hex[:8]}_"}
        client, database = connect(config, service)
        opened.append((client, database))
        if prepare:
            prepare(database)
        return database

    yield open_database
    for client, database in opened:
        client.drop_database(database.name)
        client.close()


@pytest.fixture
def service_proxy(container_factory, service_config):
    """``service_proxy(UsersService)``: that service started in its own container, and
    an RPC proxy to it (``config`` defaults to ``service_config``), closed after the test."""
    with ExitStack() as stack:
        def start(service_class, config=None, timeout=20):
            config = service_config if config is None else config
            container_factory(service_class, config).start()
            return stack.enter_context(ServiceRpcProxy(service_class.name, config,
                                                       timeout=timeout))

        yield start


@pytest.fixture
def service_database(service_config):
    """``service_database("users")``: the database that service uses under
    ``service_config`` (same MONGO_DATABASE_PREFIX), its client closed after the test."""
    opened = []

    def open_database(service, config=None):
        client, database = connect(service_config if config is None else config, service)
        opened.append(client)
        return database

    yield open_database
    for client in opened:
        client.close()
