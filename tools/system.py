"""Start and stop the whole EventPost system on one machine, as ``invoke run`` does.

``System`` is what ``invoke run`` uses and what the e2e tests use, so the tests
drive the system exactly as a person starts it:

1. the embedded SecantusDB server (unless MONGO_URI is set), data under ``var/mongo``;
2. a check that RabbitMQ answers on AMQP_URI;
3. the local mail sink (unless SMTP_HOST is set), messages under ``var/mail``;
4. every service whose ``services/<name>/service.py`` exists, each its own
   ``nameko run --config config.yml services.<name>.service`` process;
5. a wait until ``GET /health`` on WEB_SERVER_ADDRESS answers 200.

Every child runs in its own process group (its own session, so a Ctrl-C in the
terminal reaches only us and we stop the children in order) and logs to
``var/log/<name>.log``. ``stop()`` sends SIGTERM to every group, waits, and sends
SIGKILL to whatever is left 10 s after it began; a child whose launcher dies
unexpectedly gets SIGTERM from the kernel (PR_SET_PDEATHSIG).
"""
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Start order: gateway last, so /health finds the others already consuming.
SERVICE_ORDER = ["users", "events", "search", "notifications", "mailer", "alerts", "gateway"]
DEFAULTS = {
    "WEB_SERVER_ADDRESS": "127.0.0.1:8000",
    "AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/",
}
EMBEDDED_MONGO_PORT = 27027
SINK_PORT = 1025
STOP_SECONDS = 10.0


class StartError(RuntimeError):
    """The system could not start; the message says what to do about it."""


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_answers(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def live_group_members(pgid):
    """Pids in process group ``pgid`` that are not zombies (Linux /proc).

    A killed process stays a zombie until its parent reaps it, and an orphan's new
    parent (PID 1 in a container) may take its time; zombies hold no resources.
    """
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members


def available_services(root=PROJECT_ROOT):
    """Services that exist in this checkout, in start order (gateway last)."""
    found = {p.parent.name for p in (Path(root) / "services").glob("*/service.py")}
    ordered = [name for name in SERVICE_ORDER if name in found and name != "gateway"]
    ordered += sorted(found - set(SERVICE_ORDER))
    return ordered + (["gateway"] if "gateway" in found else [])


def jwt_secret(var_dir):
    """JWT_SECRET for development: generated once, kept in var/jwt_secret (0600)."""
    path = Path(var_dir) / "jwt_secret"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL + 0600: never readable by others, never overwritten by a racing start
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def check_rabbitmq(amqp_uri, timeout=5):
    """Raise StartError with how to start RabbitMQ if it does not answer on amqp_uri."""
    from kombu import Connection

    parts = urlsplit(amqp_uri)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    how = ("start it with `rabbitmq-server -detached` (as root; `invoke install` "
           "installs and starts it), or point AMQP_URI at a running broker")
    if not port_answers(host, port, timeout=2):
        raise StartError(f"RabbitMQ does not answer on {host}:{port}: {how}.")
    try:
        with Connection(amqp_uri, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:
        raise StartError(
            f"RabbitMQ at {host}:{port} refused the connection ({exc}): {how}."
        ) from exc


try:  # loaded here, not between fork and exec
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:  # not Linux/glibc: stop() still cleans up on a normal exit
    _LIBC = None
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: own session/process group, and SIGTERM if the launcher dies."""
    os.setsid()
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list
    log_path: Path
    process: subprocess.Popen = None
    infrastructure: bool = False
    wake: object = None  # called while waiting for the child to stop (see _wake_web)

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum):
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines=20):
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class System:
    """The whole system on this machine. Use ``start()``/``stop()`` or ``with System():``.

    root:         the project checkout (config.yml, services/)
    var_dir:      where data, logs, mail and the JWT secret go (default root/var)
    env:          extra environment for every child (overrides os.environ), e.g.
                  ``{"REMINDER_CATCH_UP_HOURS": "1"}`` or WEB_SERVER_ADDRESS
    mongo_port:   port of the embedded SecantusDB server (when MONGO_URI is unset)
    smtp_port:    port of the local mail sink (when SMTP_HOST is unset)
    instances:    {service: count}, e.g. ``{"notifications": 2, "mailer": 2}``; gateway
                  processes share WEB_SERVER_ADDRESS (SO_REUSEPORT: the kernel spreads
                  connections over them), each with its own read models
    services:     names to start (default: every existing services/<name>/service.py)
    """

    root: Path = PROJECT_ROOT
    var_dir: Path = None
    env: dict = field(default_factory=dict)
    mongo_port: int = EMBEDDED_MONGO_PORT
    smtp_port: int = SINK_PORT
    instances: dict = field(default_factory=dict)
    services: list = None
    health_timeout: float = 90.0
    echo: object = print

    def __post_init__(self):
        self.root = Path(self.root).resolve()
        self.var_dir = Path(self.var_dir or self.root / "var").resolve()
        self.log_dir = self.var_dir / "log"
        self.mail_dir = self.var_dir / "mail"
        self.children = []
        self.child_env = None

    # -- settings ---------------------------------------------------------------

    def setting(self, name):
        """Extra env first, then the launcher's environment; empty counts as unset."""
        value = self.env.get(name, os.environ.get(name))
        return value if value not in (None, "") else DEFAULTS.get(name)

    @property
    def web_address(self):
        return self.setting("WEB_SERVER_ADDRESS")

    @property
    def base_url(self):
        return f"http://{self.web_address}"

    @property
    def embedded_mongo(self):
        return self.setting("MONGO_URI") is None

    @property
    def embedded_smtp(self):
        return self.setting("SMTP_HOST") is None

    # -- start ------------------------------------------------------------------

    def start(self):
        started = time.monotonic()
        try:
            self._start()
        except BaseException:  # a failed or interrupted start leaves nothing behind
            self.stop()
            raise
        self.echo(f"EventPost is up at {self.base_url}/ (healthy after "
                  f"{time.monotonic() - started:.1f}s; logs in {self.log_dir}/)")
        return self

    def _start(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        names = self.services if self.services is not None else available_services(self.root)
        if not names:
            raise StartError(f"no services/<name>/service.py under {self.root}")

        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.env.items()})
        env["PYTHONUNBUFFERED"] = "1"  # log lines reach var/log as they happen
        for name in ("AMQP_URI", "WEB_SERVER_ADDRESS"):
            env[name] = self.setting(name)
        env["JWT_SECRET"] = self.setting("JWT_SECRET") or jwt_secret(self.var_dir)

        self.echo(f"checking RabbitMQ at {_redact(env['AMQP_URI'])}")
        check_rabbitmq(env["AMQP_URI"])

        host, _, port = self.web_address.rpartition(":")
        if "gateway" in names and port_answers(host, int(port)):
            raise StartError(
                f"something already listens on {self.web_address} (another `invoke run`?); "
                "stop it or set WEB_SERVER_ADDRESS"
            )

        # both servers start side by side; services need both, so wait for both
        waits = []
        if self.embedded_mongo:
            env["MONGO_URI"], ready = self._start_mongo()
            waits.append(ready)
        else:
            env["MONGO_URI"] = self.setting("MONGO_URI")
        if self.embedded_smtp:
            env["SMTP_HOST"], env["SMTP_PORT"] = "127.0.0.1", str(self.smtp_port)
            waits.append(self._start_sink())
        else:
            env["SMTP_HOST"] = self.setting("SMTP_HOST")
            env["SMTP_PORT"] = self.setting("SMTP_PORT") or "25"
        for wait in waits:
            wait()
        self.child_env = env

        config = str(self.root / "config.yml")
        for name in names:
            count = int(self.instances.get(name, 1))
            for index in range(1, count + 1):
                label = name if index == 1 else f"{name}-{index}"
                argv = [sys.executable, "-m", "nameko", "run", "--config", config,
                        f"services.{name}.service"]
                if env.get("CONSUL_HTTP_ADDR"):
                    # as in Docker and systemd: Consul KV eventpost/<name>/ over the env
                    argv = [sys.executable, "-m", "bus.consul", "exec", "--service", name,
                            "--", *argv]
                self._spawn(Child(
                    label,
                    argv,
                    self.log_dir / f"{label}.log",
                    wake=self._wake_web if name == "gateway" else None,
                ), env)
        self.echo(f"started {len([c for c in self.children if not c.infrastructure])} "
                  f"service processes: {', '.join(names)}")
        if "gateway" in names:
            self._wait_healthy()

    def _spawn(self, child, env):
        log = open(child.log_path, "ab")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(child.argv)}\n".encode())
        log.flush()
        try:
            child.process = subprocess.Popen(
                child.argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()  # the child holds its own copy of the descriptor
        self.children.append(child)
        return child

    def _start_mongo(self):
        if port_answers("127.0.0.1", self.mongo_port):
            raise StartError(
                f"port {self.mongo_port} is in use (another `invoke run`?): set MONGO_URI to "
                "use that server, or free the port"
            )
        storage = self.var_dir / "mongo"
        storage.mkdir(parents=True, exist_ok=True)
        child = self._spawn(Child(
            "mongo",
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1",
             "--port", str(self.mongo_port), "--storage-path", str(storage)],
            self.log_dir / "mongo.log", infrastructure=True,
        ), dict(os.environ))
        uri = f"mongodb://127.0.0.1:{self.mongo_port}/"
        self.echo(f"starting the embedded SecantusDB server on {uri} (data in {storage})")
        return uri, lambda: self._wait_for(child, lambda: _mongo_ping(uri), 60, "SecantusDB")

    def _start_sink(self):
        if port_answers("127.0.0.1", self.smtp_port):
            raise StartError(
                f"port {self.smtp_port} is in use (another `invoke run`?): set SMTP_HOST/"
                "SMTP_PORT to use that server, or free the port"
            )
        child = self._spawn(Child(
            "mail-sink",
            [sys.executable, "-m", "services.mailer.sink", "--host", "127.0.0.1",
             "--port", str(self.smtp_port), "--dir", str(self.mail_dir)],
            self.log_dir / "mail-sink.log", infrastructure=True,
        ), dict(os.environ))
        self.echo(f"starting the mail sink on 127.0.0.1:{self.smtp_port} "
                  f"(messages in {self.mail_dir})")
        return lambda: self._wait_for(
            child, lambda: port_answers("127.0.0.1", self.smtp_port), 20, "the mail sink")

    def _wait_for(self, child, ready, timeout, what):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.running:
                raise StartError(f"{what} exited with {child.process.returncode}; "
                                 f"{child.log_path}:\n{child.log_tail()}")
            if ready():
                return
            time.sleep(0.1)
        raise StartError(f"{what} did not answer within {timeout}s; see {child.log_path}")

    def _wake_web(self):
        """Open and close a connection to the gateway's port.

        ``nameko run`` handles SIGTERM by scheduling ``stop`` on eventlet's hub, which
        only runs once the hub wakes up; a process whose only entrypoint is HTTP can
        sleep there for up to 60 s. An incoming connection wakes it at once.
        """
        host, _, port = self.web_address.rpartition(":")
        port_answers(host, int(port), timeout=0.2)

    def _wait_healthy(self):
        url = f"{self.base_url}/health"
        self.echo(f"waiting for {url} to answer 200 (up to {self.health_timeout:.0f}s)")
        started = time.monotonic()
        last_report, last = started, "no answer yet"
        while True:
            for child in self.children:
                if not child.running:
                    raise StartError(f"{child.name} exited with {child.process.returncode} "
                                     f"during start-up; {child.log_path}:\n{child.log_tail()}")
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200 and all(c.running for c in self.children):
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                last = type(exc).__name__
            now = time.monotonic()
            if now - started > self.health_timeout:
                raise StartError(f"{url} not healthy after {self.health_timeout:.0f}s "
                                 f"(last: {last}); logs in {self.log_dir}/")
            if now - last_report >= 3:
                self.echo(f"  ... {now - started:.0f}s, last answer: {last}")
                last_report = now
            time.sleep(0.2)

    # -- stop -------------------------------------------------------------------

    def stop(self, timeout=STOP_SECONDS):
        """SIGTERM every child's group, services before the servers they use; SIGKILL
        whatever is left ``timeout`` seconds after this call began."""
        if not self.children:
            return
        began = time.monotonic()
        deadline = began + timeout - 0.5  # leave time to reap after SIGKILL
        services = [c for c in self.children if not c.infrastructure]
        infrastructure = [c for c in self.children if c.infrastructure]
        # Services first, so in-flight workers finish while Mongo and SMTP still answer;
        # SecantusDB needs ~4 s to close its storage, so it keeps at least that much.
        self._terminate(services, min(deadline - 4.5, began + timeout / 2))
        if services:
            self.echo(f"services stopped after {time.monotonic() - began:.1f}s")
        self._terminate(infrastructure, deadline)
        for child in self.children:
            # the leader may be gone while something it spawned is still in its group
            child.signal_group(signal.SIGKILL)
            if child.process is not None:
                try:
                    child.process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    self.echo(f"{child.name} (pid {child.process.pid}) did not die")
        self.children = []

    def _terminate(self, children, deadline):
        running = [c for c in children if c.running]
        for child in running:
            child.signal_group(signal.SIGTERM)
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = [c for c in running if c.running]
            for child in running:
                if child.wake:
                    child.wake()
        for child in running:
            self.echo(f"{child.name} did not stop on SIGTERM in time; killing it")
            child.signal_group(signal.SIGKILL)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- helpers for tests and tasks ---------------------------------------------

    def mail_files(self):
        """Received messages (.eml paths), oldest first."""
        if not self.mail_dir.exists():
            return []
        return sorted(self.mail_dir.glob("*.eml"))


def _mongo_ping(uri):
    from pymongo import MongoClient

    client = MongoClient(uri, serverSelectionTimeoutMS=300)
    try:
        client.admin.command("ping")
        return True
    except Exception:
        return False
    finally:
        client.close()


def _redact(uri):
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri
