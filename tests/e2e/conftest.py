"""The whole system, started the way `invoke run` starts it, driven over HTTP.

``system`` (session) runs tools.system.System in a temporary var dir, on free
loopback ports and in its own RabbitMQ vhost, so it never meets a developer's
`invoke run` or another test run on the same machine. ``http`` is a
requests.Session that joins paths onto the gateway's URL. Every test under
tests/e2e is marked ``e2e``.

Mail goes to the real local sink (aiosmtpd); ``system.wait_for_mail(...)`` reads
the ``.eml`` files it writes.

To change how the system runs for e2e tests, edit E2E_ENV / E2E_INSTANCES below.
"""
import email
import email.policy
import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
import requests

from tests.e2e.helpers import login
from tests.support.queues import in_flight
from tools.system import PROJECT_ROOT, System, free_port

# Extra settings for every service process, e.g. faster retries for tests.
E2E_ENV = {
    "LOG_LEVEL": "INFO",
    # a daily saved search's digest every few seconds (tests/e2e/test_saved_searches.py)
    "ALERTS_DIGEST_SECONDS": "4",
}
# Two of each scheduler/consumer: timers fire on every instance and consumers
# compete, so "never twice" is tested the way production runs it. Two gateways share
# the port, each with its own read models (test_read_models.py).
E2E_INSTANCES = {"notifications": 2, "mailer": 2, "gateway": 2, "alerts": 2}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@dataclass
class Mail:
    path: Path
    message: EmailMessage
    mail_from: str
    rcpt_to: list

    @property
    def subject(self):
        return self.message["Subject"] or ""

    @property
    def to(self):
        return self.message["To"] or ""

    @property
    def text(self):
        """The plain-text body (or the HTML one if there is no plain text)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part is not None else ""

    def __repr__(self):
        return f"<Mail {self.path.name} to={self.rcpt_to} subject={self.subject!r}>"


def read_mail(path):
    with open(path, "rb") as f:
        message = email.message_from_binary_file(f, policy=email.policy.default)
    rcpt = [a.strip() for a in (message["X-RcptTo"] or "").split(",") if a.strip()]
    return Mail(Path(path), message, message["X-MailFrom"] or "", rcpt)


class RunningSystem:
    """What the e2e tests see: URLs, the mail sink's messages, operator commands."""

    def __init__(self, system, amqp_uri):
        self.system = system
        self.amqp_uri = amqp_uri
        self.base_url = system.base_url
        self.mail_dir = system.mail_dir
        self.var_dir = system.var_dir
        self.log_dir = system.log_dir

    # -- mail -------------------------------------------------------------------

    def mails(self, after=None):
        """Every received message, oldest first; ``after``: a mark() or a Mail."""
        if isinstance(after, Mail):
            after = after.path.name
        return [read_mail(p) for p in self.system.mail_files()
                if after is None or p.name > after]

    def mark(self):
        """A position in the mailbox; pass it as ``after`` to see only newer mail."""
        files = self.system.mail_files()
        return files[-1].name if files else ""

    def mails_to(self, address, after=None):
        address = address.lower()
        return [m for m in self.mails(after) if address in [r.lower() for r in m.rcpt_to]]

    def wait_for_mail(self, to=None, subject=None, count=1, after=None, timeout=15.0):
        """Wait until ``count`` messages match (recipient, substring of the subject);
        returns them, oldest first. Fails with what did arrive, to help debugging."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.mails_to(to, after) if to else self.mails(after)
            if subject is not None:
                found = [m for m in found if subject.lower() in m.subject.lower()]
            if len(found) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(found) >= count, (
            f"expected {count} mail(s) to={to!r} subject~{subject!r} within {timeout}s, "
            f"got {found}; all: {self.mails(after)}"
        )
        return found

    # -- waiting until the services are done -------------------------------------

    def wait_until_idle(self, timeout=15.0):
        """Wait until every service has handled what it was sent: no message delivered
        and unacknowledged, nor ready in a queue a service consumes or in a retry delay,
        counted exactly (tests.support.queues.in_flight: the services' workers run in
        other processes), in two counts in a row (a message passed on from one queue to
        another between their reads in one count is seen in the next). What they would
        still send because of what they got is sent by then, so a test that expects no
        more mail or messages can check now, instead of watching for a fixed time."""
        config = {"AMQP_URI": self.amqp_uri}
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 2:
            busy = in_flight(config)
            quiet = 0 if busy else quiet + 1
            if busy:
                assert time.monotonic() < deadline, f"still handling after {timeout}s: {busy}"
                time.sleep(0.1)

    # -- operator commands on this system ---------------------------------------

    @property
    def env(self):
        """The environment `invoke` tasks need to act on this system."""
        return {**self.system.child_env, "AMQP_URI": self.amqp_uri}

    def invoke(self, *args, check=True, timeout=60):
        """Run an invoke task against this system, e.g. invoke("create-admin", ...)."""
        result = subprocess.run(
            [sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT, env=self.env,
            capture_output=True, text=True, timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"invoke {args}: {result.stdout}\n{result.stderr}"
        return result

    def create_admin(self, username=None, email=None, password="admin password 1"):
        """An admin account made as an operator makes one (`invoke create-admin`);
        returns ``(user, password)``."""
        username = username or f"admin_{uuid.uuid4().hex[:10]}"
        email = email or f"{username}@example.org"
        result = self.invoke("create-admin", "--username", username, "--email", email,
                             "--password", password)
        return json.loads(result.stdout), password

    def log(self, name):
        """A service's log (e.g. "gateway", "notifications-2"), for assertions."""
        return (self.log_dir / f"{name}.log").read_text(errors="replace")


def _vhost_uri(amqp_uri, vhost):
    parts = urlsplit(amqp_uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{vhost}", "", ""))


@contextmanager
def running_system(request, rabbit_manager, var_dir, name, label, mongo_uri, instances=None):
    """The whole system as `invoke run` starts it (a RunningSystem), on free loopback
    ports, in ``var_dir`` and in a RabbitMQ vhost of its own ("eventpost_<name>_..."),
    stopped and its vhost deleted on exit. ``label`` prefixes what it prints."""
    # A vhost of our own: service queues are durable and fixed-name, so two systems
    # on one broker (a developer's `invoke run`, a parallel test run) would
    # otherwise answer each other's RPC calls and eat each other's events.
    base_uri = os.environ.get("AMQP_URI") or request.config.getoption("RABBIT_AMQP_URI")
    base_uri = base_uri.replace("pyamqp://", "amqp://", 1)
    username = urlsplit(base_uri).username or "guest"
    vhost = f"eventpost_{name}_{uuid.uuid4().hex[:10]}"
    rabbit_manager.create_vhost(vhost)
    rabbit_manager.set_vhost_permissions(vhost, username, ".*", ".*", ".*")
    amqp_uri = _vhost_uri(base_uri, vhost)

    env = {
        **E2E_ENV,
        "AMQP_URI": amqp_uri,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "JWT_SECRET": f"{name}-" + uuid.uuid4().hex * 2,
        "MONGO_URI": mongo_uri,
        "SMTP_HOST": "",
        "CONSUL_HTTP_ADDR": "",
    }
    launcher = System(
        var_dir=var_dir, env=env, mongo_port=free_port(), smtp_port=free_port(),
        instances=dict(instances or {}),
        echo=lambda message: print(f"[{label}] {message}", file=sys.__stderr__, flush=True),
    )
    try:
        launcher.start()
        yield RunningSystem(launcher, amqp_uri)
    finally:
        launcher.stop()
        try:
            rabbit_manager.delete_vhost(vhost)
        except Exception as exc:  # a leftover vhost is harmless; say so and go on
            print(f"[{label}] could not delete vhost {vhost}: {exc}", file=sys.__stderr__)


@pytest.fixture(scope="session")
def system(request, tmp_path_factory, rabbit_manager):
    # hermetic by default: the embedded servers, whatever the developer's shell says
    with running_system(request, rabbit_manager, tmp_path_factory.mktemp("eventpost-var"),
                        name="e2e", label="e2e system",
                        mongo_uri=os.environ.get("TEST_MONGO_URI", ""),
                        instances=E2E_INSTANCES) as running:
        yield running


class BaseUrlSession(requests.Session):
    """requests.Session with paths joined onto the gateway URL (nameko's web_session
    fixture breaks on werkzeug 3, DESIGN.md)."""

    def __init__(self, base_url):
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, urljoin(self.base_url, url.lstrip("/")), *args, **kwargs)


@pytest.fixture
def http(system):
    with BaseUrlSession(system.base_url) as session:
        yield session


@pytest.fixture(scope="session")
def admin(system):
    """The admin account the e2e tests share: ``(user, password)`` of
    ``system.create_admin()``. A test that changes an admin's role, password or
    tokens makes its own admin."""
    return system.create_admin()


@pytest.fixture(scope="session")
def admin_headers(system, admin):
    """Bearer headers of ``admin`` (one login for the session)."""
    user, password = admin
    with BaseUrlSession(system.base_url) as session:
        return login(session, {"username": user["username"], "password": password})


@pytest.fixture(scope="session")
def _made_per_test_function():
    return {}


@pytest.fixture
def per_test_function(request, _made_per_test_function):
    """``per_test_function("alice", make)``: ``make()``, made once for a test function
    and shared by its parameter sets; every other test function gets its own. For
    accounts: one costs two argon2 hashes in the users service, the bulk of the time
    of a test that checks the answer to one variation of a request. What a parameter
    set changes (events, reminders) each makes for itself."""
    def made(name, make):
        key = (request.node.nodeid.split("[", 1)[0], name)
        if key not in _made_per_test_function:
            _made_per_test_function[key] = make()
        return _made_per_test_function[key]

    return made

