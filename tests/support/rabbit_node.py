"""A private RabbitMQ node for fault tests: started, killed and restarted freely.

DESIGN.md, "Faults, on one machine": a node of its own beside the shared broker on
5672 (which is never touched), on free ports, with its data and logs in a folder
of the test's owned by the ``rabbitmq`` user (Debian's ``rabbitmq-server`` runs as
that user when started by root)::

    node = RabbitNode(tmp_path / "rabbit").start()
    node.amqp_uri              # amqp://guest:guest@127.0.0.1:<port>/
    node.kill9(); node.start() # SIGKILL the Erlang VM, then start it on the same data
    node.stop_app(); node.start_app()
    node.stop()

Each node has a unique name (``ep-<hex>@localhost``), so tests running at the same
time on one machine cannot act on each other's nodes; ``kill9`` finds its VM by
that name in the processes' environment, never by a broad pattern.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_answers(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def available():
    """Whether a private node can be started here (root, and RabbitMQ installed)."""
    return os.geteuid() == 0 and shutil.which("rabbitmq-server") is not None


class RabbitNode:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.name = f"ep-{uuid.uuid4().hex[:10]}@localhost"
        self.port, self.dist_port, self.management_port = free_port(), free_port(), free_port()

    @property
    def amqp_uri(self):
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self):
        return f"http://127.0.0.1:{self.management_port}"

    def _env(self):
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
        }

    def _prepare(self):
        if (self.directory / "rabbitmq.conf").exists():
            return
        (self.directory / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.directory / "log").mkdir(parents=True, exist_ok=True)
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = {self.port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "loopback_users = none\n")
        (self.directory / "enabled_plugins").write_text("[rabbitmq_management].\n")
        user = pwd.getpwnam("rabbitmq")
        for path in [self.directory, *self.directory.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
        # the folder's parents must let the rabbitmq user through
        for parent in self.directory.parents:
            if str(parent) in ("/", "/tmp"):
                break
            os.chmod(parent, os.stat(parent).st_mode | 0o111)

    def ctl(self, *args, timeout=60, check=True):
        return subprocess.run(["rabbitmqctl", "-n", self.name, *args], env=self._env(),
                              capture_output=True, text=True, timeout=timeout, check=check)

    def start(self, timeout=240):  # a node starts in ~20 s, minutes on a loaded machine
        """Start the node (again, on the same data) and wait until AMQP answers."""
        self._prepare()
        subprocess.run(["rabbitmq-server", "-detached"], env=self._env(), check=True,
                       capture_output=True, timeout=60)
        self.wait(timeout)
        return self

    def wait(self, timeout=240):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_answers(self.port):
                return
            time.sleep(0.2)
        raise RuntimeError(f"RabbitMQ node {self.name} did not listen on {self.port} within "
                           f"{timeout}s; logs in {self.directory / 'log'}")

    def pids(self):
        """The node's Erlang VM (beam) processes, found by the node's unique name in
        their environment."""
        marker = f"RABBITMQ_NODENAME={self.name}".encode()
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if (proc / "comm").read_text().strip() != "beam.smp":
                    continue
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
        return found

    def kill9(self):
        """SIGKILL the node's VM: no clean shutdown, unacknowledged messages in flight."""
        pids = self.pids()
        if not pids:
            raise RuntimeError(f"no process of RabbitMQ node {self.name}")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while (self.pids() or port_answers(self.port)) and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop_app(self):
        self.ctl("stop_app")

    def start_app(self):
        self.ctl("start_app")
        self.wait()

    def stop(self):
        if self.pids():
            self.ctl("stop", check=False, timeout=60)
            deadline = time.monotonic() + 30
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid in self.pids():
                os.kill(pid, signal.SIGKILL)
