"""The two systems the bench compares, each started beside the other and stopped after.

- ``EventPost``: started exactly as ``invoke run`` starts it (tools.system.System), in
  its own var dir, on free loopback ports (gateway, embedded SecantusDB, mail sink)
  and in a RabbitMQ vhost of its own (``Vhost``), so it meets no other system on the
  shared broker. Seeded through its write path: event documents with their
  ``event_created`` messages go straight into the events database, as
  ``invoke seed --bulk`` does, and the events service's outbox sweeper publishes
  them; then the bench waits until the gateway serves every one.
- ``Baseline``: loadtests/baseline under ``gunicorn -w 7`` on its own SecantusDB
  process and data dir; seeded with ``insert_many``.

Both get the same generated events (tools.tasks_events.demo_event, one seeded random
generator), each in its own storage shape.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import requests

from loadtests.baseline import events as baseline_events
from tools.system import (
    PROJECT_ROOT,
    Child,
    StartError,
    System,
    _die_with_parent,
    _mongo_ping,
    free_port,
    port_answers,
)
from tools.tasks_events import BULK_BATCH, Progress, demo_event

MANAGEMENT = "http://127.0.0.1:15672"
BROKER = "guest:guest@127.0.0.1:5672"
AUTH = ("guest", "guest")
PAGE = 100  # the API's largest page, for counting what the gateway serves


def say(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Vhost:
    """A RabbitMQ vhost of our own on the shared broker, made and removed through the
    management API (the broker itself is never reconfigured)."""

    def __init__(self, prefix="eventpost_bench"):
        self.name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.amqp_uri = f"amqp://{BROKER}/{quote(self.name, safe='')}"
        self.created = False

    def create(self):
        if not port_answers("127.0.0.1", 15672):
            raise StartError("RabbitMQ's management API does not answer on 127.0.0.1:15672; "
                             "the bench makes its own vhost through it (`invoke install` "
                             "enables the plugin)")
        requests.put(f"{MANAGEMENT}/api/vhosts/{self.name}", auth=AUTH,
                     timeout=10).raise_for_status()
        self.created = True
        requests.put(f"{MANAGEMENT}/api/permissions/{self.name}/guest", auth=AUTH, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return self

    def queued(self, contains):
        """The most messages waiting in any consumed queue of this vhost whose name
        contains ``contains`` (the slowest consumer), or None if there is none. The
        management API's figures lag a few seconds."""
        response = requests.get(f"{MANAGEMENT}/api/queues/{self.name}", auth=AUTH, timeout=10)
        response.raise_for_status()
        queues = [q for q in response.json() if contains in q["name"] and q.get("consumers")]
        return max(q.get("messages", 0) for q in queues) if queues else None

    def close_connections(self, connection_name):
        """Have the broker close this vhost's connections named ``connection_name`` (as
        a broker restart would); returns how many."""
        response = requests.get(f"{MANAGEMENT}/api/vhosts/{self.name}/connections",
                                auth=AUTH, timeout=10)
        response.raise_for_status()
        names = [c["name"] for c in response.json()
                 if c.get("client_properties", {}).get("connection_name") == connection_name]
        for name in names:
            requests.delete(f"{MANAGEMENT}/api/connections/{quote(name, safe='')}", auth=AUTH,
                            timeout=10, headers={"X-Reason": "bench: read a fresh snapshot"}
                            ).raise_for_status()
        return len(names)

    def delete(self):
        if self.created:
            try:
                requests.delete(f"{MANAGEMENT}/api/vhosts/{self.name}", auth=AUTH, timeout=10)
                self.created = False
            except requests.RequestException as exc:  # harmless leftover; say so
                say(f"could not delete vhost {self.name}: {exc}")


def seed_events(rng, now, count):
    """``count`` generated event bodies (API.md's writable fields), the same for both."""
    return [demo_event(rng, now) for _ in range(count)]


class EventPost:
    name = "EventPost"

    def __init__(self, var_dir, instances=None):
        self.var_dir = var_dir
        self.vhost = Vhost()
        self.system = None
        self.instances = dict(instances or {})
        self.event_ids = []
        self.admin = None  # (username, password)
        self.user_headers = None

    @property
    def base_url(self):
        return self.system.base_url

    def start(self):
        self.vhost.create()
        self.system = System(
            var_dir=self.var_dir,
            env={"AMQP_URI": self.vhost.amqp_uri,
                 "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
                 "JWT_SECRET": uuid.uuid4().hex * 2,
                 "MONGO_URI": "", "SMTP_HOST": "", "CONSUL_HTTP_ADDR": ""},
            mongo_port=free_port(), smtp_port=free_port(), instances=self.instances,
            echo=lambda message: say(f"EventPost: {message}"),
        )
        self.system.start()
        return self

    def stop(self):
        try:
            if self.system is not None:
                self.system.stop()
        finally:
            self.vhost.delete()

    def processes(self):
        return [(child.name, child.process.pid) for child in self.system.children
                if child.process is not None]

    def remove_data(self):
        if self.system is not None:
            shutil.rmtree(self.system.var_dir / "mongo", ignore_errors=True)

    def create_accounts(self):
        """An admin (users.create_admin over RPC, as an operator makes one) and a plain
        user, each with a token."""
        import warnings

        warnings.filterwarnings("ignore", message=r"\s*(Eventlet is deprecated|pkg_resources)")
        from nameko.standalone.rpc import ClusterRpcProxy

        import bus.config
        import bus.errors  # noqa: F401  (lets RPC rebuild our error classes)

        username, password = f"bench_admin_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        config = bus.config.load(AMQP_URI=self.vhost.amqp_uri)
        with ClusterRpcProxy(config, timeout=30) as rpc:
            rpc.users.create_admin(username=username, email=f"{username}@example.org",
                                   password=password)
        self.admin = (username, password)
        name = f"bench_user_{uuid.uuid4().hex[:8]}"
        response = requests.post(f"{self.base_url}/users", timeout=30, json={
            "username": name, "email": f"{name}@example.org", "password": password})
        response.raise_for_status()
        self.user_headers = self._login(name, password)

    def login_admin(self):
        """Bearer headers of the bench's admin."""
        return self._login(*self.admin)

    def _login(self, username, password):
        response = requests.post(f"{self.base_url}/auth/token", timeout=30,
                                 json={"username": username, "password": password})
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def seed(self, bodies, window, wait_consumers=True, announce=True):
        """Write ``bodies`` with their event_created messages into the events database,
        then wait until the gateway serves all ``len(self.event_ids)`` seeded events in
        ``window`` (the from/to that holds every seeded start). ``wait_consumers=False``:
        without first waiting for every other consumer (search, notifications) too.

        ``announce=False``: the documents go in without messages, as ``invoke seed
        --bulk --rebuild`` writes them (the outbox publishes a few dozen a second once
        the collection is large: an hour for 100,000); then search is rebuilt and every
        gateway catches up as after a broker reconnect, by having RabbitMQ close its
        read models' connection. Notifications and alerts never hear of these events."""
        from bus.mongo import connect
        from services.events.handlers import new_event

        env = self.system.child_env
        client, db = connect({"MONGO_URI": env["MONGO_URI"],
                              "MONGO_DATABASE_PREFIX": env.get("MONGO_DATABASE_PREFIX", "")},
                             "events")
        # Older than the sweeper's grace period, so its next sweep publishes them.
        occurred = (datetime.now(timezone.utc) - timedelta(minutes=1)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        progress = Progress(len(bodies), "EventPost: written")
        try:
            for start in range(0, len(bodies), BULK_BATCH):
                batch = []
                for body in bodies[start:start + BULK_BATCH]:
                    document, message = new_event(body)
                    message["occurred_at"] = occurred
                    batch.append({**document, "pending_events": [message] if announce else []})
                    self.event_ids.append(document["_id"])
                db.events.insert_many(batch, ordered=False)
                progress.show(start + len(batch))
            progress.done(len(bodies))
            if announce:
                self._wait_published(db, len(bodies))
        finally:
            client.close()
        if not announce:
            self._rebuild_read_models()
        elif wait_consumers:
            self._wait_consumed(len(bodies))
        self._wait_served(window, len(self.event_ids))

    def _rebuild_read_models(self):
        import bus.config
        from services.gateway.feed import CONNECTION_NAME
        from tools.tasks_events import rebuild_search_of

        rebuild_search_of(bus.config.load(AMQP_URI=self.vhost.amqp_uri),
                          label="EventPost: search rebuilt")
        closed = self.vhost.close_connections(CONNECTION_NAME)
        say(f"EventPost: closed {closed} gateway read-model connection(s); each reconnects "
            "and reads a snapshot")

    def _wait_published(self, db, total):
        progress = Progress(total, "EventPost: published by the outbox")
        pending = {"pending_events.0.occurred_at": {"$exists": True}}
        while True:
            left = db.events.count_documents(pending)
            progress.show(total - min(left, total))
            if left == 0:
                break
            self._check_running()
            time.sleep(1)
        progress.done(total)

    def _wait_consumed(self, total, stalled_after=120):
        """Until every consumer of event_created (search, notifications, ...) has emptied
        its queue, so the runs measure a system at rest rather than one still applying
        the seed. Gives up when nothing moves for ``stalled_after`` seconds;
        _wait_served decides what the gateway serves."""
        progress = Progress(total, "EventPost: consumed by the slowest event_created consumer")
        last, moved_at = None, time.monotonic()
        while True:
            queued = self.vhost.queued("event_created")
            if queued is None:
                return
            progress.show(max(total - queued, 0))
            if queued == 0:
                break
            if queued != last:
                last, moved_at = queued, time.monotonic()
            elif time.monotonic() - moved_at > stalled_after:
                say(f"EventPost: {queued} event_created messages have not moved for "
                    f"{stalled_after}s; going on")
                return
            self._check_running()
            time.sleep(2)
        progress.done(total)

    def _wait_served(self, window, expected):
        """Page through GET /events in ``window`` until it lists ``expected`` events."""
        progress = Progress(expected, "EventPost: served by the gateway")
        while True:
            served = self.count_served(window)
            progress.show(min(served, expected))
            if served >= expected:
                break
            self._check_running()
            time.sleep(1)
        progress.done(served)
        if served > expected:
            say(f"EventPost: the gateway lists {served} events in the window, "
                f"{served - expected} more than seeded")

    def count_served(self, window):
        count, cursor = 0, None
        while True:
            params = {**window, "limit": PAGE, **({"cursor": cursor} if cursor else {})}
            response = requests.get(f"{self.base_url}/events", params=params, timeout=60)
            if response.status_code != 200:
                say(f"EventPost: GET /events answered {response.status_code} "
                    f"{response.text[:200]}; counting again")
                return count
            page = response.json()
            count += len(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return count

    def _check_running(self):
        for child in self.system.children:
            if not child.running:
                raise StartError(f"EventPost's {child.name} exited; {child.log_path}:\n"
                                 f"{child.log_tail()}")


class Baseline:
    """loadtests/baseline: SecantusDB + gunicorn -w 7, each its own process group."""

    name = "baseline"
    WORKERS = 7

    def __init__(self, var_dir):
        self.var_dir = var_dir
        self.log_dir = var_dir / "log"
        self.children = []
        self.event_ids = []
        self.port = None
        self.events = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        storage = self.var_dir / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        mongo_port, self.port = free_port(), free_port()
        uri = f"mongodb://127.0.0.1:{mongo_port}/"
        mongo = self._spawn("baseline-mongo", [
            sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(mongo_port),
            "--storage-path", str(storage)], {})
        self._wait(mongo, lambda: _mongo_ping(uri), 60, "the baseline's SecantusDB")
        self.events = baseline_events.collection(uri)
        baseline_events.ensure_indexes(self.events)
        web = self._spawn("baseline-gunicorn", [
            sys.executable, "-m", "gunicorn", "-w", str(self.WORKERS), "--worker-class", "sync",
            "-b", f"127.0.0.1:{self.port}", "loadtests.baseline.app:app"],
            {"BASELINE_MONGO_URI": uri})
        self._wait(web, self._answers, 60, "the baseline's gunicorn")
        say(f"baseline: up at {self.base_url}/ (gunicorn -w {self.WORKERS}, SecantusDB {uri})")
        return self

    def _answers(self):
        try:
            return requests.get(f"{self.base_url}/events", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def _spawn(self, name, argv, env):
        child = Child(name, argv, self.log_dir / f"{name}.log", infrastructure=True)
        with open(child.log_path, "ab") as log:
            child.process = subprocess.Popen(
                argv, cwd=PROJECT_ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self.children.append(child)
        return child

    def _wait(self, child, ready, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise StartError(f"{what} exited; {child.log_path}:\n{child.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise StartError(f"{what} did not answer within {timeout}s; see {child.log_path}")

    def seed(self, bodies, window=None):
        progress = Progress(len(bodies), "baseline: insert_many")
        now = datetime.now(timezone.utc)
        for start in range(0, len(bodies), BULK_BATCH):
            documents = [baseline_events.new_document(body, now)
                         for body in bodies[start:start + BULK_BATCH]]
            self.events.insert_many(documents, ordered=False)
            self.event_ids += [d["_id"] for d in documents]
            progress.show(start + len(documents))
        progress.done(len(bodies))

    def processes(self):
        return [(child.name, child.process.pid) for child in self.children]

    def stop(self):
        """SIGTERM each group (the web server before its database), SIGKILL after 10 s."""
        if self.events is not None:
            self.events.database.client.close()
        for child in reversed(self.children):
            child.signal_group(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while child.running and time.monotonic() < deadline:
                time.sleep(0.1)
            child.signal_group(signal.SIGKILL)
            child.process.wait(5)
        self.children = []

    def remove_data(self):
        shutil.rmtree(self.var_dir / "mongo", ignore_errors=True)
