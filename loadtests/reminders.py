"""Reminder delivery benchmark: schedules many reminders, receives their emails, reports.

    python -m loadtests.reminders --count 1000 --window 10 --instances 2
    python -m loadtests.reminders --count 300 --window 5 --kill-at -5   # SIGKILL + restart

It starts what it measures, isolated from anything else on the machine: a
SecantusDB server in a temporary folder (or ``--mongo-uri``: an empty server), a
fresh RabbitMQ vhost (management API on RABBIT_MANAGEMENT, default
http://127.0.0.1:15672, guest/guest), an SMTP server (aiosmtpd, in this process)
and ``--instances`` ``nameko run`` processes each of ``notifications`` and
``mailer``. It publishes one ``event_created`` as the events service would,
schedules ``--count`` reminders over AMQP RPC (``notifications.create``) due evenly
over ``--window`` seconds starting ``--lead`` seconds later, and records when each
email arrives (its ``X-EventPost-Send-Key`` names the reminder).

``--kill-at S`` sends SIGKILL to every service process S seconds after the first
reminder is due (negative: before), then starts them again.

Prints: emails received, reminders sent once / duplicated / lost (no email), the
reminders' final statuses (a mail interrupted by SIGKILL while being handed to the
SMTP server is ``failed``, not resent: see services/mailer/service.py), delivery delay
(SMTP arrival minus ``remind_at``) p50 / p99 / max, and reminders per second
(emails over the time from the first due reminder to the last email). Exits 1 if any
reminder was duplicated or lost.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402  (nameko's standalone proxies need it first)

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from email import message_from_bytes, policy  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

import requests  # noqa: E402
from aiosmtpd.controller import Controller  # noqa: E402
from nameko.standalone.events import event_dispatcher  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from bus.messages import iso, new_message, utc_now  # noqa: E402
from tests.support.secantus import SecantusProcess, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ["notifications", "mailer"]


class Inbox:
    """Records (arrival time, send key) of every email."""

    def __init__(self):
        self.arrivals = []
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        mail = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.arrivals.append((arrived, mail["X-EventPost-Send-Key"]))
        return "250 OK"


class Vhost:
    """A throwaway RabbitMQ vhost, so the benchmark shares no queue with a running system."""

    def __init__(self, management, amqp_host):
        self.api = management.rstrip("/")
        self.name = f"reminders-bench-{uuid.uuid4().hex[:8]}"
        self.uri = f"amqp://guest:guest@{amqp_host}/{quote(self.name, safe='')}"

    def __enter__(self):
        auth = ("guest", "guest")
        requests.put(f"{self.api}/api/vhosts/{self.name}", auth=auth, timeout=10).raise_for_status()
        requests.put(f"{self.api}/api/permissions/{self.name}/guest", auth=auth, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return self

    def __exit__(self, *exc):
        requests.delete(f"{self.api}/api/vhosts/{self.name}", auth=("guest", "guest"), timeout=10)


class Services:
    """``instances`` nameko processes of each service, each in its own process group."""

    def __init__(self, env, instances, log_dir):
        self.env, self.instances, self.log_dir = env, instances, log_dir
        self.processes = []

    def start(self):
        for service in SERVICES:
            for number in range(self.instances):
                log = open(self.log_dir / f"{service}-{number}.log", "ab")
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "nameko", "run", "--config", str(ROOT / "config.yml"),
                     f"services.{service}.service"],
                    cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))

    def kill(self):
        for process in self.processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes = []

    def stop(self):
        for process in self.processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.processes = []


def wait_healthy(config, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with ClusterRpcProxy(config, timeout=5) as rpc:
                if all(getattr(rpc, s).health() == "ok" for s in SERVICES):
                    return
        except Exception:  # not consuming yet
            time.sleep(0.5)
    raise SystemExit(f"services not healthy within {timeout}s; see their logs")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run(args):
    work = Path(tempfile.mkdtemp(prefix="reminders-bench-"))
    mongo, mongo_uri = None, args.mongo_uri
    if not mongo_uri:
        mongo = SecantusProcess(work / "mongo", log_path=work / "secantus.log").start()
        mongo_uri = mongo.uri
    inbox = Inbox()
    inbox.controller.start()
    amqp_host = args.amqp_host
    with Vhost(args.management, amqp_host) as vhost:
        config = {"AMQP_URI": vhost.uri, "serializer": "json"}
        env = {**os.environ, "AMQP_URI": vhost.uri, "MONGO_URI": mongo_uri,
               "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(inbox.controller.port),
               "LOG_LEVEL": "WARNING", "CONSUL_HTTP_ADDR": ""}
        services = Services(env, args.instances, work)
        services.start()
        try:
            wait_healthy(config)
            report = measure(args, config, mongo_uri, services, inbox)
        finally:
            services.stop()
    inbox.controller.stop()
    if mongo:
        mongo.stop()
    print(f"logs: {work}")
    return report


def measure(args, config, mongo_uri, services, inbox):
    now = utc_now()
    event = {
        "id": uuid.uuid4().hex, "title": "Benchmark night", "description": "", "topics": ["load"],
        "starts_at": iso(now + timedelta(days=1)), "ends_at": None, "timezone": "Europe/Berlin",
        "place": {"name": "Hall", "address": None, "lat": 52.5, "lng": 13.4},
        "organizer": None, "status": "scheduled", "version": 1,
        "created_at": iso(now), "updated_at": iso(now),
    }
    message = new_message("events", "event_created", event["id"], 1, event=event)
    event_dispatcher(config)("events", "event_created", message)
    events = MongoClient(mongo_uri)["notifications"]["events"]
    while events.find_one({"_id": event["id"]}) is None:
        time.sleep(0.1)

    first_due = (utc_now() + timedelta(seconds=args.lead)).replace(microsecond=0)
    step = args.window / max(1, args.count - 1)
    users = [{"id": f"bench-user-{n}", "username": f"bench{n}", "email": f"bench{n}@example.com",
              "secondary_emails": [], "role": "user", "created_at": iso(now)} for n in range(20)]
    due = {}
    started = time.time()
    with ClusterRpcProxy(config, timeout=60) as rpc:
        for start in range(0, args.count, 100):
            replies = [
                rpc.notifications.create.call_async(users[i % len(users)], {
                    "event_id": event["id"],
                    "remind_at": iso(first_due + timedelta(seconds=i * step))})
                for i in range(start, min(args.count, start + 100))
            ]
            for reply in replies:
                created = reply.result()
                remind_at = datetime.fromisoformat(created["remind_at"])
                due[f"reminder:{created['id']}:1"] = remind_at.timestamp()
    scheduled_in = time.time() - started
    if time.time() > first_due.timestamp():
        raise SystemExit(f"scheduling took {scheduled_in:.1f}s, more than --lead {args.lead}s")
    print(f"scheduled {len(due)} reminders in {scheduled_in:.1f}s, due from {iso(first_due)} "
          f"over {args.window}s")

    if args.kill_at is not None:
        eventlet.sleep(max(0.0, first_due.timestamp() + args.kill_at - time.time()))
        services.kill()
        print(f"SIGKILLed every service process at {args.kill_at:+.1f}s from the first due time")
        eventlet.sleep(1)
        services.start()
        wait_healthy(config)

    deadline = first_due.timestamp() + args.window + args.timeout
    while time.time() < deadline and len({k for _, k in inbox.arrivals} & due.keys()) < len(due):
        eventlet.sleep(0.2)
    eventlet.sleep(args.quiet)  # any duplicate would arrive meanwhile

    arrivals = list(inbox.arrivals)
    counts = Counter(key for _, key in arrivals)
    first_arrival = {}
    for arrived, key in sorted(arrivals):
        first_arrival.setdefault(key, arrived)
    delays = [first_arrival[key] - due[key] for key in due if key in first_arrival]
    sent_once = sum(1 for key in due if counts[key] == 1)
    duplicated = sum(1 for key in due if counts[key] > 1)
    lost = sum(1 for key in due if counts[key] == 0)
    span = max(first_arrival.values()) - first_due.timestamp() if first_arrival else 0
    report = {
        "reminders": len(due), "emails": len(arrivals), "sent_once": sent_once,
        "duplicated": duplicated, "lost": lost,
        "delay_p50_s": round(percentile(delays, 0.50), 3) if delays else None,
        "delay_p99_s": round(percentile(delays, 0.99), 3) if delays else None,
        "delay_max_s": round(max(delays), 3) if delays else None,
        "reminders_per_s": round(len(first_arrival) / span, 1) if span > 0 else None,
    }
    reminders = MongoClient(mongo_uri)["notifications"]["notifications"]
    report["statuses"] = dict(Counter(
        f"{r['status']}" + (f" ({r['failure_reason'][:40]}...)" if r.get("failure_reason") else "")
        for r in reminders.find({}, {"status": 1, "failure_reason": 1})))
    for name, value in report.items():
        print(f"{name:>16}: {value}")
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="reminders to schedule")
    parser.add_argument("--window", type=float, default=10.0,
                        help="seconds over which they fall due (0: all at once)")
    parser.add_argument("--lead", type=float, default=60.0,
                        help="seconds from now to the first due reminder (time to schedule)")
    parser.add_argument("--instances", type=int, default=2, help="processes of each service")
    parser.add_argument("--kill-at", type=float, default=None,
                        help="SIGKILL and restart every service this many seconds after "
                             "the first due time (negative: before)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after the last due time to wait for emails")
    parser.add_argument("--quiet", type=float, default=5.0,
                        help="seconds to keep listening for duplicates at the end")
    parser.add_argument("--mongo-uri", default=None,
                        help="an empty MongoDB to use instead of starting SecantusDB")
    parser.add_argument("--amqp-host", default="127.0.0.1:5672")
    parser.add_argument("--management", default=os.environ.get(
        "RABBIT_MANAGEMENT", "http://127.0.0.1:15672"))
    report = run(parser.parse_args())
    sys.exit(1 if report["duplicated"] or report["lost"] else 0)


if __name__ == "__main__":
    main()
