"""Operator tasks (invoke). `invoke --list` shows them; `invoke --help <task>` explains one.

    invoke install run      # system packages + Python package, then the whole system
    invoke install test     # the same, then every test layer
"""
import getpass
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

from invoke import Exit, task

# The RPC client imports nameko, which warns about eventlet and pkg_resources on
# every call; operators need neither message.
warnings.filterwarnings("ignore", message=r"\s*(Eventlet is deprecated|pkg_resources)")

ROOT = Path(__file__).resolve().parent
CONFIG = ROOT / "config.yml"
AMQP_DEFAULT = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT_PORT = 15672  # nameko's test fixtures talk to RabbitMQ's management API
# command -> Debian package; chromium and its driver: the browser tests (tests/browser)
APT_PACKAGES = {"rabbitmq-server": "rabbitmq-server", "wrk": "wrk",
                "chromium": "chromium", "chromedriver": "chromium-driver"}


def say(message):
    print(message, flush=True)


def amqp_uri():
    return os.environ.get("AMQP_URI") or AMQP_DEFAULT


def as_root(command):
    """The command, prefixed with sudo when we are not root (apt, rabbitmq)."""
    if os.geteuid() == 0:
        return command
    if shutil.which("sudo"):
        return ["sudo", *command]
    raise Exit(f"`{' '.join(command)}` needs root; run it as root or install sudo", code=1)


def _sbin(name):
    # Debian puts the RabbitMQ tools in /usr/sbin, which a non-root PATH may lack
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _broker_answers():
    from tools.system import port_answers

    return port_answers("127.0.0.1", 5672) and port_answers("127.0.0.1", MANAGEMENT_PORT)


def _wait_for_broker(timeout=90):
    from tools.system import port_answers

    say("waiting for RabbitMQ (AMQP 5672 and management 15672) ...")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_answers("127.0.0.1", 5672) and port_answers("127.0.0.1", MANAGEMENT_PORT):
            return
        time.sleep(1)
    raise Exit(f"RabbitMQ did not answer within {timeout}s; see /var/log/rabbitmq/", code=1)


@task
def install(c, python_only=False):
    """Install rabbitmq-server (+ management plugin, started) and this package [dev].

    System packages only when missing (apt-get, via sudo when not root); the Python
    package goes into the interpreter running invoke, e.g. .venv/bin/invoke.
    """
    if not python_only:
        missing = [pkg for cmd, pkg in APT_PACKAGES.items() if not _sbin(cmd)]
        if missing:
            say(f"installing system packages: {', '.join(missing)}")
            env = {"DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(as_root(["apt-get", "update"]), check=True, env={**os.environ, **env})
            subprocess.run(as_root(["apt-get", "install", "-y", "--no-install-recommends",
                                    *missing]), check=True, env={**os.environ, **env})
        else:
            say("system packages present: " + ", ".join(APT_PACKAGES.values()))
        if amqp_uri() != AMQP_DEFAULT:
            say(f"AMQP_URI is set ({amqp_uri()}); not managing the local RabbitMQ")
        elif _broker_answers():
            say("RabbitMQ answers on 127.0.0.1:5672 with the management plugin")
        else:
            running = _sbin("rabbitmqctl") and subprocess.run(
                as_root([_sbin("rabbitmqctl"), "status"]), capture_output=True
            ).returncode == 0
            # --offline writes enabled_plugins without a running node
            flags = [] if running else ["--offline"]
            subprocess.run(as_root([_sbin("rabbitmq-plugins"), "enable", *flags,
                                    "rabbitmq_management"]), check=True)
            if not running:
                say("starting RabbitMQ: rabbitmq-server -detached")
                subprocess.run(as_root([_sbin("rabbitmq-server"), "-detached"]), check=True)
            _wait_for_broker()
            say("RabbitMQ is up")
    say("installing the Python package: pip install -e '.[dev]'")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"],
                   check=True)


@task(help={
    "instances": "service=count, repeatable, e.g. --instances notifications=2",
    "services": "comma-separated subset to start (default: every services/<name>/service.py)",
})
def run(c, instances=None, services=None):
    """Start the whole system; Ctrl-C or SIGTERM stops every process.

    SecantusDB (unless MONGO_URI is set), the mail sink (unless SMTP_HOST is set) and
    every service as its own process; waits until /health answers 200.
    """
    from tools.system import StartError, System

    counts = {}
    for item in (instances or "").split(","):
        if item:
            name, _, count = item.partition("=")
            counts[name.strip()] = int(count)
    system = System(
        root=ROOT, instances=counts,
        services=[s.strip() for s in services.split(",")] if services else None,
    )

    class Stop(Exception):
        pass

    def on_sigterm(signum, frame):
        raise Stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        system.start()
        say("Ctrl-C stops every process.")
        while True:
            time.sleep(0.5)
            for child in system.children:
                if not child.running:
                    raise StartError(f"{child.name} exited with {child.process.returncode}; "
                                     f"{child.log_path}:\n{child.log_tail()}")
    except (KeyboardInterrupt, Stop):
        say("\nstopping ...")
    except StartError as exc:
        say(f"error: {exc}")
        raise Exit(code=1) from None
    finally:
        # SIGTERM during the stop must not cut it short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        started = time.monotonic()
        system.stop()
        say(f"stopped in {time.monotonic() - started:.1f}s")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _check_test_broker():
    from tools.system import StartError, check_rabbitmq, port_answers

    try:
        check_rabbitmq(amqp_uri())
    except StartError as exc:
        raise Exit(f"error: {exc}", code=1) from None
    if not port_answers("127.0.0.1", MANAGEMENT_PORT):
        raise Exit("error: RabbitMQ's management API does not answer on 127.0.0.1:15672; "
                   "the integration tests need it: `rabbitmq-plugins enable "
                   "rabbitmq_management` (or `invoke install`)", code=1)


NO_TESTS_COLLECTED = 5  # pytest's exit status when a selection is empty


def _layers():
    """The folders of tests/ (unit, integration, e2e, browser, faults, ...)."""
    return sorted(path.name for path in (ROOT / "tests").iterdir()
                  if (path / "__init__.py").exists() and path.name != "support")


def _test_paths(layer):
    return [f"tests/{layer}"] if layer else ["tests"]


# The layers that drive a whole running system (each its own) spend most of their time
# waiting for it (a reminder's due time, a process's start); the others keep the CPU
# busy. The default run runs each system layer and the rest side by side, each group in
# its own pytest process.
SYSTEM_LAYERS = ("e2e", "browser")


def _default_shards():
    layers = _layers()
    shards = {name: [f"tests/{name}"] for name in SYSTEM_LAYERS if name in layers}
    shards["in-process"] = [f"tests/{name}" for name in layers if name not in SYSTEM_LAYERS]
    return shards


def _run_side_by_side(commands):
    """Run each pytest command at once, every output line prefixed with its name (a
    line shows when pytest ends it: a file's dots, then its percentage); returns the
    first non-zero exit status, or 0."""
    import threading

    def relay(name, process):
        for line in process.stdout:
            print(f"[{name}] {line}", end="", flush=True)

    processes, relays = {}, []
    for name, command in commands.items():
        say(f"$ [{name}] " + " ".join(["pytest", *command[3:]]))
        processes[name] = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True)
        relays.append(threading.Thread(target=relay, args=(name, processes[name])))
        relays[-1].start()
    codes = {name: process.wait() for name, process in processes.items()}
    for thread in relays:
        thread.join()
    for name, code in codes.items():
        say(f"[{name}] {'passed' if code == 0 else f'FAILED (exit status {code})'}")
    return next((code for code in codes.values() if code), 0)


@task(help={"layer": "a folder of tests/: unit, integration, e2e, browser, faults (default: "
                     "all); slow: the slow layer",
            "args": "extra pytest arguments, e.g. --args='-x -k users'",
            "slow": "run only the slow layer (long bursts, fault runs) instead"})
def test(c, layer=None, args=None, slow=False):
    """Run the tests (unit, integration, e2e) but the slow ones; prints how long they took.

    With no layer, the e2e tests, the browser tests and the in-process ones (unit,
    integration) run side by side in three pytest processes (SYSTEM_LAYERS).

    `invoke test --slow` (or `--layer slow`) runs the tests marked ``slow`` (bursts,
    broker/database/SMTP faults), which the default run leaves out to stay under 5
    minutes; `--slow --layer e2e` only those of one folder.
    """
    if layer == "slow":
        layer, slow = None, True
    if layer is not None and layer not in _layers():
        raise Exit(f"error: no test layer {layer!r}; one of {', '.join(_layers())} or slow",
                   code=2)
    _check_test_broker()
    started = time.monotonic()
    marker = ["-m", "slow" if slow else "not slow", *(args or "").split()]
    if layer is None and not slow:
        code = _run_side_by_side({
            name: [sys.executable, "-m", "pytest", *paths, *marker]
            for name, paths in _default_shards().items()})
    else:
        command = [sys.executable, "-m", "pytest", *_test_paths(layer), *marker]
        say("$ " + " ".join(["pytest", *command[3:]]))
        code = subprocess.run(command, cwd=ROOT).returncode
    if code == NO_TESTS_COLLECTED and (layer or slow):  # an empty selection is no failure
        say(f"no {'slow ' if slow else ''}tests in {' '.join(_test_paths(layer))}")
        code = 0
    say(f"tests {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.1f}s")
    if code:
        raise Exit(code=code)


@task(help={"layer": "unit, integration or e2e (default: all)",
            "args": "extra pytest arguments"})
def coverage(c, layer=None, args=None):
    """Tests under coverage (service processes too); terminal report + htmlcov/.

    Includes the service processes the e2e tests start.
    """
    _check_test_broker()
    rc = ROOT / "var" / "coveragerc"
    rc.parent.mkdir(exist_ok=True)
    # Child processes (nameko run, started by tools.system) measure themselves
    # through coverage's .pth hook when COVERAGE_PROCESS_START names this file;
    # parallel data files are combined afterwards.
    rc.write_text(
        "[run]\nsource = bus, services, tools\nconcurrency = eventlet\nparallel = True\n"
        f"data_file = {ROOT / '.coverage'}\n"
        "[report]\nskip_empty = True\n"
    )
    env = {**os.environ, "COVERAGE_PROCESS_START": str(rc)}
    python = sys.executable
    subprocess.run([python, "-m", "coverage", "erase", f"--rcfile={rc}"], cwd=ROOT, check=True)
    started = time.monotonic()
    code = subprocess.run([python, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest",
                           *_test_paths(layer), *(args or "").split()], cwd=ROOT,
                          env=env).returncode
    subprocess.run([python, "-m", "coverage", "combine", f"--rcfile={rc}"], cwd=ROOT)
    subprocess.run([python, "-m", "coverage", "report", f"--rcfile={rc}"], cwd=ROOT)
    subprocess.run([python, "-m", "coverage", "html", f"--rcfile={rc}"], cwd=ROOT)
    say(f"tests {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - started:.1f}s; "
        "HTML report: htmlcov/index.html")
    if code:
        raise Exit(code=code)


@task
def lint(c):
    """ruff check over the whole project."""
    code = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT).returncode
    if code:
        raise Exit(code=code)


def _operator_env():
    """The environment `invoke run` gives its services, for tools that join them."""
    from tools.system import EMBEDDED_MONGO_PORT, SINK_PORT, jwt_secret

    env = dict(os.environ)
    env.setdefault("MONGO_URI", f"mongodb://127.0.0.1:{EMBEDDED_MONGO_PORT}/")
    if not env.get("SMTP_HOST"):
        env["SMTP_HOST"], env["SMTP_PORT"] = "127.0.0.1", str(SINK_PORT)
    if not env.get("JWT_SECRET"):
        env["JWT_SECRET"] = jwt_secret(ROOT / "var")
    return env


@task
def shell(c):
    """`nameko shell` on the running system: n.rpc.<service>.<method>(...)"""
    env = _operator_env()
    os.chdir(ROOT)
    # exec: the shell owns the terminal (readline, Ctrl-D) as if started by hand
    os.execve(sys.executable, [sys.executable, "-m", "nameko", "shell", "--config",
                               str(CONFIG)], env)


def _rpc_config():
    import bus.config

    os.environ.update(_operator_env())
    return bus.config.load(CONFIG)


@task(help={"username": "the account to create or promote",
            "email": "its email (for a new account)",
            "password": "its password (prompted for when omitted)"})
def create_admin(c, username, email, password=None):
    """Create an admin, or promote an existing username, on the running system."""
    from nameko.exceptions import UnknownService
    from nameko.standalone.rpc import ClusterRpcProxy

    import bus.errors  # noqa: F401  (registers the error classes RPC rebuilds)

    if password is None:
        password = getpass.getpass(f"password for {username}: ")
    try:
        with ClusterRpcProxy(_rpc_config(), timeout=15) as rpc:
            user = rpc.users.create_admin(username=username, email=email, password=password)
    except UnknownService:
        raise Exit("error: the users service is not running; start the system with "
                   "`invoke run` (in another terminal) first", code=1) from None
    except bus.errors.DomainError as exc:
        raise Exit(f"error: {exc.code}: {exc.message} {json.dumps(exc.details)}",
                   code=1) from None
    except Exception as exc:  # e.g. RabbitMQ down, or the RPC timed out
        raise Exit(f"error: {type(exc).__name__}: {exc}", code=1) from None
    user = {k: v for k, v in user.items() if "password" not in k}
    say(json.dumps(user, indent=2))


@task
def parked(c):
    """Messages parked after repeated handler failures, per queue."""
    from bus.reliable import parked_counts

    counts = parked_counts(amqp_uri())
    if not counts:
        say("no parked queues yet (no consumer has started)")
    for name, count in sorted(counts.items()):
        say(f"{count:6d}  {name}")
    total = sum(counts.values())
    say(f"{total} parked message(s)" + ("; replay with `invoke replay-parked --queue "
                                         "<name>`" if total else ""))


@task(help={"queue": "a queue from `invoke parked` (with or without .parked); "
                     "omit to replay every non-empty one"})
def replay_parked(c, queue=None):
    """Move parked messages back to their handler's queue for new attempts."""
    from bus.reliable import parked_counts
    from bus.reliable import replay_parked as replay

    if queue:
        names = [queue.removesuffix(".parked")]
    else:
        names = [n.removesuffix(".parked") for n, count in parked_counts(amqp_uri()).items()
                 if count]
    for name in names:
        say(f"{replay(amqp_uri(), name):6d}  replayed to {name}")
    if not names:
        say("nothing parked")


# --- Tasks of the feature work ----------------------------------------------------
# A task is a @task function in this module's namespace; invoke lists it by name
# (create_admin -> `invoke create-admin`). Larger groups live in tools/tasks_*.py
# and are imported here. Reuse _rpc_config() to call the running system over RPC,
# and tools.system.System to start one of your own.
from tools.tasks_bench import bench  # noqa: E402
from tools.tasks_events import loadtest, projection_lag, rebuild_search, seed  # noqa: E402

__all__ = ["install", "run", "test", "coverage", "lint", "shell", "create_admin", "parked",
           "replay_parked", "seed", "rebuild_search", "loadtest", "projection_lag", "bench"]
