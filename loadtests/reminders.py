"""Reminder delivery benchmark: due reminders in, emails out; prints a table.

    python -m loadtests.reminders                       # the runs of issue 8, one table
    python -m loadtests.reminders --runs burst --repeat 3   # medians of 3 rounds
    python -m loadtests.reminders --count 300 --window 0 --instances notifications=2,mailer=2
    python -m loadtests.reminders --faults all          # each fault during a burst

Each run starts what it measures, isolated from anything else on the machine: the
whole system as `invoke run` starts it (tools.system.System: every service, one
process each unless ``--instances`` says otherwise, the embedded SecantusDB in a
temporary folder) in a fresh RabbitMQ vhost (management API on RABBIT_MANAGEMENT,
default http://127.0.0.1:15672, guest/guest), mailing to an outside SMTP server
(tests/support/smtp_faults.py, its own process, which logs each arrival).
It creates one event over RPC (``events.create``), then ``--count`` reminders for 20
users a day ahead (by the service's create handler, or ``--create rpc``: one
``notifications.create`` each), then writes their due times: evenly over
``--window`` seconds (0: all in the same second), the first ``--lead`` seconds
later (``schedule``). It records when each email arrives; its
``X-EventPost-Send-Key`` names the reminder.

Runs: ``burst`` (1,000 due in the same second), ``burst-2x2`` (the same with two
notifications and two mailer processes), ``spread`` (10,000 over 100 s),
``sustained`` (3,000 in the same second: the steady rate), ``idle``.
Per run: delivered (one email), duplicated (more than one), lost (no email and a
final status, or no reminder), interrupted (``failed`` because a crash hit the SMTP
hand-over: never resent, counted apart), still in flight at the end, delay after
``remind_at`` (SMTP arrival minus due time) p50 / p99 / max, throughput (emails over
the time from the first due reminder to the last email), steady rate (between the
10th and 90th percentile of arrivals), database operations per reminder, the load
average before and after. ``idle``: database commands per second of each service
process when nothing is due, counted inside each process (query_counter/).
Exits 1 if any reminder was duplicated, lost or still in flight.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402  (nameko's standalone proxies need it first)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import quote  # noqa: E402

import requests  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from pymongo import MongoClient, UpdateOne  # noqa: E402

from loadtests.procstat import commands_sent, counting_env, cpu_seconds  # noqa: E402
from tests.support.smtp_faults import SmtpFaults  # noqa: E402
from tools.system import Child, System, free_port, live_group_members  # noqa: E402

SERVICES = ["notifications", "mailer"]
USERS = 20
RUNS = {
    "burst": dict(label="1,000 due in the same second, one process each", count=1000,
                  window=0, instances={}),
    "burst-2x2": dict(label="1,000 due in the same second, notifications=2, mailer=2",
                      count=1000, window=0, instances={"notifications": 2, "mailer": 2}),
    "spread": dict(label="10,000 due over 100 s, one process each", count=10000,
                   window=100, instances={}),
    "sustained": dict(label="3,000 due in the same second, one process each (steady rate)",
                      count=3000, window=0, instances={}),
}
INTERRUPTED = "interrupted"


def say(line):
    print(line, flush=True)


def utc_now():
    return datetime.now(timezone.utc)


def iso(moment):
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class Vhost:
    """A throwaway RabbitMQ vhost, so a run shares no queue with a running system."""

    def __init__(self, management, amqp_host="127.0.0.1:5672"):
        self.api = management.rstrip("/")
        self.name = f"reminders-bench-{uuid.uuid4().hex[:8]}"
        self.uri = f"amqp://guest:guest@{amqp_host}/{quote(self.name, safe='')}"

    def __enter__(self):
        auth = ("guest", "guest")
        requests.put(f"{self.api}/api/vhosts/{self.name}", auth=auth, timeout=60).raise_for_status()
        requests.put(f"{self.api}/api/permissions/{self.name}/guest", auth=auth, timeout=60,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        return self

    def __exit__(self, *exc):
        # a busy broker answers its management API slowly
        requests.delete(f"{self.api}/api/vhosts/{self.name}", auth=("guest", "guest"), timeout=60)


class Stack:
    """The system of one run: System on ``amqp_uri``, mailing to a SmtpFaults server."""

    def __init__(self, work, amqp_uri, instances=None, services=None, env=None, echo=None):
        self.work = Path(work)
        self.amqp_uri = amqp_uri
        self.smtp = SmtpFaults(self.work / "smtp", free_port())
        self.system = System(
            var_dir=self.work / "var", mongo_port=free_port(), smtp_port=free_port(),
            instances=dict(instances or {}), services=services,
            echo=echo or (lambda message: None),
            env={"AMQP_URI": amqp_uri, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
                 "MONGO_URI": "", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(self.smtp.port),
                 "CONSUL_HTTP_ADDR": "", "LOG_LEVEL": "WARNING",
                 "JWT_SECRET": "bench-" + uuid.uuid4().hex * 2, **(env or {})})
        self.config = {"AMQP_URI": amqp_uri, "serializer": "json"}

    def __enter__(self):
        self.smtp.start()
        try:
            self.system.start()
            self.wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.system.stop()
        self.smtp.stop()

    @property
    def mongo_uri(self):
        return self.system.child_env["MONGO_URI"]

    def database(self, name):
        return MongoClient(self.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)[name]

    def wait_healthy(self, names=SERVICES, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with ClusterRpcProxy(self.config, timeout=5) as rpc:
                    if all(getattr(rpc, name).health() == "ok" for name in names):
                        return
            except Exception:  # noqa: BLE001  not consuming yet
                time.sleep(0.5)
        raise SystemExit(f"{names} not healthy within {timeout}s; logs in {self.system.log_dir}")

    def in_flight(self):
        """How many reminders are still due or in the mailer's hands."""
        reminders = self.database("notifications")["notifications"]
        return sum(reminders.count_documents({"status": s}) for s in ("scheduled", "sending"))

    # faults

    def children(self, names):
        """The named children: services (every instance) or "mongo"."""
        return [c for c in self.system.children
                if c.name in names or c.name.rsplit("-", 1)[0] in names]

    def sigkill(self, names):
        """SIGKILL the process groups of the named children; they are gone on return."""
        victims = self.children(names)
        for child in victims:
            os.killpg(child.process.pid, signal.SIGKILL)
        for child in victims:
            child.process.wait(timeout=10)
            deadline = time.monotonic() + 10
            while live_group_members(child.process.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        return victims

    def restart(self, victims):
        """Start killed children again exactly as System started them."""
        for old in victims:
            self.system.children.remove(old)
            env = dict(os.environ) if old.infrastructure else self.system.child_env
            self.system._spawn(Child(old.name, old.argv, old.log_path,
                                     infrastructure=old.infrastructure), env)


def make_event(stack, title="Benchmark night"):
    now = utc_now()
    with ClusterRpcProxy(stack.config, timeout=30) as rpc:
        return rpc.events.create({
            "title": title, "description": "", "topics": ["load"],
            "starts_at": iso(now + timedelta(days=1)), "ends_at": None,
            "timezone": "Europe/Berlin", "organizer": None,
            "place": {"name": "Hall", "address": None, "lat": 52.5, "lng": 13.4}})


class create_direct(eventlet.GreenPool):
    """The notifications service's create handler (handlers.create), run here on the
    service's database: the same reminder documents as ``notifications.create``, at
    the database's pace rather than one RPC each (10,000 RPCs take minutes on a
    shared machine). The scheduler finds them by itself: its clock looks ahead every
    ``horizon`` seconds when nothing wakes it."""

    def __init__(self, stack, event, size=10):
        from services.notifications import handlers
        super().__init__(size)
        self.handlers, self.event = handlers, event
        self.db = stack.database("notifications")

    def one(self, user, fields):
        def refuse(*args):
            raise AssertionError("a live event needs neither a relay nor a withdrawal")
        return self.handlers.create(self.db, user, fields, utc_now(), lambda _: self.event,
                                    refuse, refuse)


def schedule(stack, event, count, window, lead=None, users=USERS, bouncing=0, echo=say,
             direct=False):
    """Create ``count`` reminders, then make them due over ``window`` seconds, the first
    ``lead`` seconds later (default: 15 s, plus 1 s per 100 reminders); returns {send
    key: due unix time}, the first due time and how long creating them took.

    They are created a day ahead (``direct``: by the service's own create handler run
    here, ``create_direct``; else one ``notifications.create`` RPC each), at whatever
    pace the machine allows; then their due times are written into the service's
    database in one go, as a PATCH of ``remind_at`` would (``rev`` bumped), in the
    order they fall due. So the run's start does not depend on how long creating
    them took, and nothing is being created while they are delivered."""
    # the first ``bouncing`` users' addresses are refused by a scripted SMTP server
    people = [{"id": f"bench-user-{n}", "username": f"bench{n}",
               "email": f"{'bounce' if n < bouncing else 'bench'}{n}@example.com",
               "secondary_emails": [], "role": "user", "created_at": iso(utc_now())}
              for n in range(users)]
    parked = iso(utc_now() + timedelta(days=1))
    ids, started = [], time.time()
    create = create_direct(stack, event) if direct else None
    with ClusterRpcProxy(stack.config, timeout=120) as rpc:
        for start in range(0, count, 100):
            batch = [(people[i % users], {"event_id": event["id"], "remind_at": parked})
                     for i in range(start, min(count, start + 100))]
            if direct:
                created = list(create.imap(lambda args: create.one(*args), batch))
            else:
                created = [reply.result() for reply in
                           [rpc.notifications.create.call_async(*b) for b in batch]]
            ids += [reminder["id"] for reminder in created]
    took = time.time() - started
    lead = lead if lead is not None else 15 + count / 100
    reminders = stack.database("notifications")["notifications"]
    step = window / max(1, count - 1)
    for _ in range(4):  # the machine may be slower than the lead allows: a longer one
        first_due = (utc_now() + timedelta(seconds=lead)).replace(microsecond=0)
        at = [first_due + timedelta(seconds=i * step) for i in range(count)]
        writing = time.time()
        if not window:  # all the same: one update
            reminders.update_many({"event_id": event["id"], "status": "scheduled"},
                                  {"$set": {"remind_at": first_due}, "$inc": {"rev": 1}})
        for start in range(0, count if window else 0, 200):
            reminders.bulk_write([UpdateOne({"_id": ids[i], "status": "scheduled"},
                                            {"$set": {"remind_at": at[i]}, "$inc": {"rev": 1}})
                                  for i in range(start, min(count, start + 200))],
                                 ordered=False)
        if time.time() < first_due.timestamp() - 3:
            break
        lead = 15 + 2 * (time.time() - writing)  # the first ones would have been late
        echo(f"  writing the due times took {time.time() - writing:.0f} s: again, "
             f"with a lead of {lead:.0f} s")
    else:
        raise SystemExit(f"could not write the due times of {count} reminders ahead of them")
    echo(f"  {count} reminders created in {took:.0f} s"
         f"{' (create handler)' if direct else ' (RPC)'}; due times written "
         f"{first_due.timestamp() - time.time():.0f} s before the first one")
    due = {f"reminder:{ids[i]}:1": at[i].timestamp() for i in range(count)}
    return due, first_due.timestamp(), took


def wait_for_mail(stack, due, timeout, quiet=5.0):
    """Until every reminder has its email, or (after the last due time) none is still
    on its way; then ``quiet`` seconds more, for duplicates to show."""
    deadline, last_due, next_check = time.time() + timeout, max(due.values()), 0.0
    while time.time() < deadline:
        if set(due) <= {key for _, key in stack.smtp.arrivals()}:
            break
        if time.time() > max(last_due + 10, next_check):
            next_check = time.time() + 5
            if not stack.in_flight():
                break  # every reminder has an outcome: nothing more is coming
        time.sleep(0.25)
    time.sleep(quiet)


def statuses(stack):
    """{reminder id: (status, failure reason)}"""
    reminders = stack.database("notifications")["notifications"]
    return {r["_id"]: (r["status"], r.get("failure_reason") or "")
            for r in reminders.find({}, {"status": 1, "failure_reason": 1})}


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def steady_rate(arrivals):
    """Emails per second between the 10th and the 90th percentile of arrivals: the
    pace once the pipeline runs, without its start and its tail."""
    if len(arrivals) < 20:
        return None
    low, high = arrivals[len(arrivals) // 10], arrivals[len(arrivals) * 9 // 10]
    return (len(arrivals) * 8 // 10) / (high - low) if high > low else None


def report(stack, due, first_due, ops=None):
    arrivals = stack.smtp.arrivals()
    counts = Counter(key for _, key in arrivals)
    first = {}
    for arrived, key in sorted(arrivals):
        first.setdefault(key, arrived)
    statuses_now = statuses(stack)
    interrupted = {key for key in due
                   if INTERRUPTED in statuses_now.get(key.split(":")[1], ("", ""))[1]}
    delays = [first[key] - due[key] for key in due if key in first]
    span = max(first.values()) - first_due if first else 0
    result = {
        "reminders": len(due),
        "delivered": sum(1 for key in due if counts[key] == 1),
        "duplicated": sum(1 for key in due if counts[key] > 1),
        # no email and an outcome that is not one: a final status, or no reminder at all
        "lost": sum(1 for key in due if counts[key] == 0 and key not in interrupted
                    and statuses_now.get(key.split(":")[1], ("", ""))[1][:1] != "5"
                    and statuses_now.get(key.split(":")[1], ("",))[0]
                    not in ("scheduled", "sending")),
        "not_final": sum(1 for key in due if statuses_now.get(key.split(":")[1], ("",))[0]
                         in ("scheduled", "sending")),
        "interrupted": len(interrupted),
        # refused for good by the server (5xx): failed with its reason, never sent
        "refused": sum(1 for key in due if counts[key] == 0 and statuses_now.get(
            key.split(":")[1], ("", ""))[1][:1] == "5"),
        "p50": percentile(delays, 0.5) if delays else None,
        "p99": percentile(delays, 0.99) if delays else None,
        "max": max(delays) if delays else None,
        "per_s": len(first) / span if span > 0 else None,
        "steady_per_s": steady_rate(sorted(first.values())),
        "statuses": dict(Counter(s for s, _ in statuses_now.values())),
    }
    if ops is not None:
        result["db_ops_per_reminder"] = ops / max(1, len(due))
    # where the delay goes: until the scheduler claimed it, then until it arrived
    claimed = {r["_id"]: r["claimed_at"].timestamp() for r in stack.database(
        "notifications")["notifications"].find({}, {"claimed_at": 1}) if r.get("claimed_at")}
    to_claim = [claimed[k.split(":")[1]] - due[k] for k in due if k.split(":")[1] in claimed]
    to_mail = [first[k] - claimed[k.split(":")[1]] for k in due
               if k in first and k.split(":")[1] in claimed]
    if to_claim and to_mail:
        result["claimed_p50_p99"] = (percentile(to_claim, 0.5), percentile(to_claim, 0.99))
        result["mailed_p50_p99"] = (percentile(to_mail, 0.5), percentile(to_mail, 0.99))
    return result


def cpu_usage(stack):
    """{process: CPU seconds} for the database, the services and the SMTP server."""
    usage = {}
    for child in stack.system.children:
        name = child.name.rsplit("-", 1)[0] if child.name[-1].isdigit() else child.name
        usage[name] = usage.get(name, 0.0) + cpu_seconds(child.process.pid)
    usage["smtp"] = cpu_seconds(stack.smtp.process.pid)
    return usage


def opcounters(stack):
    status = stack.database("admin").command("serverStatus")["opcounters"]
    return sum(status[k] for k in ("insert", "query", "update", "delete", "getmore"))


def delivery_run(args, name, spec, work):
    env = dict(item.split("=", 1) for item in args.env)
    with Vhost(args.management) as vhost, \
            Stack(work / name, vhost.uri, spec["instances"], env=env) as stack:
        event = make_event(stack)
        due, first_due, took = schedule(stack, event, spec["count"], spec["window"], args.lead,
                                        direct=args.create == "direct")
        print(f"  {name}: {len(due)} reminders due from "
              f"{datetime.fromtimestamp(first_due, timezone.utc):%H:%M:%S} over "
              f"{spec['window']:g}s", flush=True)
        time.sleep(max(0.0, first_due - time.time() - 2))
        before, cpu_before, started = opcounters(stack), cpu_usage(stack), time.time()
        spies = profile(stack, args.profile, name, spec["window"] + 8) if args.profile else []
        wait_for_mail(stack, due, spec["window"] + args.timeout)
        for spy in spies:
            spy.wait()
        result = report(stack, due, first_due, opcounters(stack) - before)
        elapsed = time.time() - started
        cpu = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_usage(stack).items()}
        print(f"  {name}: CPU seconds over {elapsed:.0f}s: " + ", ".join(
            f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.05),
            flush=True)
    print(f"  {name}: {format_row(spec['label'], result)}", flush=True)
    if "claimed_p50_p99" in result:
        print("  {}: due -> claimed p50 {:.2f} s p99 {:.2f} s; claimed -> arrived p50 {:.2f} s "
              "p99 {:.2f} s".format(name, *result["claimed_p50_p99"], *result["mailed_p50_p99"]),
              flush=True)
    return result


def profile(stack, directory, run, seconds):
    """py-spy on the database, every notifications and mailer process and the SMTP
    server while the run delivers: raw flame graphs in ``directory``."""
    import subprocess
    spy = Path(sys.executable).with_name("py-spy")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    targets = [(c.name, c.process.pid) for c in stack.children(["mongo", *SERVICES])]
    targets.append(("smtp", stack.smtp.process.pid))
    return [subprocess.Popen([str(spy), "record", "-d", str(int(seconds)), "-r", "100",
                              "-f", "raw", "-o", str(directory / f"{run}-{name}.txt"),
                              "-p", str(pid)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for name, pid in targets]


def idle_run(args, work, seconds=30):
    """Database commands per second of each service process when nothing is due (a
    few reminders next week, so the scheduler has something to look forward to),
    counted inside each process by a pymongo CommandListener (query_counter/)."""
    counts = work / "idle-counts"
    counts.mkdir(parents=True, exist_ok=True)
    with Vhost(args.management) as vhost, \
            Stack(work / "idle", vhost.uri, env=counting_env(counts)) as stack:
        event = make_event(stack)
        schedule(stack, event, 5, 0, lead=7 * 24 * 3600)
        time.sleep(10)  # settle: every timer and sweeper has run once
        started = time.time()
        time.sleep(seconds)
        ended = time.time()
        names = {c.process.pid: c.name for c in stack.system.children if not c.infrastructure}
    rates, commands = {}, {}
    for pid, sent in commands_sent(counts, started, ended).items():
        name = names.get(pid)
        if name is None:
            continue
        rates[name] = sum(sent.values()) / (ended - started)
        by_command = Counter()
        for (command, _), count in sent.items():
            by_command[command] += count
        commands[name] = dict(by_command)
    for name in sorted(names.values()):
        print(f"  idle: {name}: {rates.get(name, 0.0):.2f} database commands/s "
              f"{commands.get(name, {})}", flush=True)
    return {"per_process": {name: rates.get(name, 0.0) for name in names.values()},
            "seconds": seconds}


# faults (DESIGN.md, "Faults, on one machine"), each during a burst; ``inject``
# returns when the fault is lifted, so "resumed after" is the first arrival after it

def _broker_kill(stack, node):
    node.kill9()
    time.sleep(3)
    node.start()


def _broker_stop_app(stack, node):
    node.stop_app()
    time.sleep(3)
    node.start_app()


def _services_kill(stack, node):
    victims = stack.sigkill(SERVICES)
    time.sleep(1)
    stack.restart(victims)


def _database_kill(stack, node):
    victims = stack.sigkill(["mongo"])
    time.sleep(3)
    stack.restart(victims)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            stack.database("admin").command("ping")
            return
        except Exception:  # noqa: BLE001  not up yet
            time.sleep(0.2)


def _smtp_down(seconds):
    def inject(stack, node):
        stack.smtp.stop()
        time.sleep(seconds)
        stack.smtp.start()
    return inject


def _smtp_replies(stack, node):
    pass  # scripted before the burst (FAULTS: script)


FAULTS = {
    "broker-kill": dict(label="RabbitMQ node kill -9, restarted after 3 s", inject=_broker_kill,
                        private_broker=True),
    "broker-stop-app": dict(label="RabbitMQ stop_app, start_app after 3 s",
                            inject=_broker_stop_app, private_broker=True),
    "services-kill": dict(label="SIGKILL every notifications and mailer process, restart",
                          inject=_services_kill, instances={"notifications": 2, "mailer": 2}),
    "database-kill": dict(label="SecantusDB kill -9, restarted on the same data after 3 s",
                          inject=_database_kill),
    "smtp-down": dict(label="SMTP server down for 60 s, then back", inject=_smtp_down(60)),
    "smtp-replies": dict(label="SMTP replies 451 x40 and 421 x20 to DATA, 550 to 1 user in 20",
                         inject=_smtp_replies, bouncing=1,
                         script={"data_replies": ["451 4.3.0 try again later"] * 40
                                 + ["421 4.3.2 closing, try later"] * 20,
                                 "rcpt_rules": {"bounce": "550 5.1.1 no such mailbox"}}),
}


def fault_run(name, work, count=1000, inject_after=1.0, timeout=240, echo=say,
              management=None, settle_timeout=90, direct=True):
    """One fault during a burst of ``count`` due in the same second (once the first
    email has arrived, ``inject_after`` seconds after the due time at the earliest);
    the report, with ``resumed_after``: seconds from lifting the fault to the next
    email."""
    spec = FAULTS[name]
    work = Path(work) / name
    node = None
    if spec.get("private_broker"):
        from tests.support.rabbit_node import RabbitNode
        node = RabbitNode(work / "rabbit").start()
        broker = contextlib.nullcontext(node.amqp_uri)
    else:
        broker = Vhost(management or os.environ.get("RABBIT_MANAGEMENT",
                                                    "http://127.0.0.1:15672"))
    try:
        with broker as vhost:
            uri = vhost if isinstance(vhost, str) else vhost.uri
            with Stack(work, uri, spec.get("instances")) as stack:
                if spec.get("script"):
                    stack.smtp.script(**spec["script"])
                event = make_event(stack)
                due, first_due, _ = schedule(stack, event, count, 0,
                                             bouncing=spec.get("bouncing", 0), echo=echo,
                                             direct=direct)
                # mid-burst: ``inject_after`` seconds after the first due time, and not
                # before the first email has arrived (a loaded machine may start later)
                time.sleep(max(0.0, first_due + inject_after - time.time()))
                deadline = time.time() + timeout
                while not stack.smtp.arrivals() and time.time() < deadline:
                    time.sleep(0.05)
                injected = time.time()
                spec["inject"](stack, node)
                lifted = time.time()
                if name != "smtp-replies":
                    echo(f"  {name}: fault at +{injected - first_due:.1f}s, lifted at "
                         f"+{lifted - first_due:.1f}s")
                wait_for_mail(stack, due, timeout)
                # nothing stays in flight: a lost report is made good within the lease
                deadline = time.time() + settle_timeout
                while stack.in_flight() and time.time() < deadline:
                    time.sleep(2)
                result = report(stack, due, first_due)
                after = sorted(t for t, _ in stack.smtp.arrivals() if t >= lifted)
                result["resumed_after"] = (after[0] - lifted) if after else None
                result["before_fault"] = sum(1 for t, _ in stack.smtp.arrivals() if t < injected)
                result["refusals"] = Counter(r[2] for r in stack.smtp.refusals() if len(r) > 2)
    finally:
        if node is not None:
            node.stop()
    return result


def format_fault_row(label, r):
    resumed = "-" if r.get("resumed_after") is None else f"{r['resumed_after']:.1f} s"
    p99 = "-" if r["p99"] is None else f"{r['p99']:.1f} s"
    return (f"| {label} | {r['delivered']} | {r['duplicated']} | {r['lost']} | "
            f"{r['interrupted']} | {r['refused']} | {r['not_final']} | {resumed} | "
            f"{p99} |")


FAULT_HEADER = ("| fault (burst of 1,000) | delivered | duplicated | lost | interrupted | "
                "refused (5xx) | not final | resumed after | delay p99 |\n"
                "|---|---|---|---|---|---|---|---|---|")


def format_row(label, r):
    def seconds(value):
        return "-" if value is None else f"{value:.2f} s"
    per_s = "-" if r["per_s"] is None else f"{r['per_s']:.0f}/s"
    steady = "-" if r.get("steady_per_s") is None else f"{r['steady_per_s']:.0f}/s"
    load = "-" if "load" not in r else "{:.1f}-{:.1f}".format(*sorted(r["load"]))
    return (f"| {label} | {r['delivered']} | {r['duplicated']} | {r['lost']} | "
            f"{r['interrupted']} | {seconds(r['p50'])} | {seconds(r['p99'])} | "
            f"{seconds(r['max'])} | {per_s} | {steady} | {r.get('not_final', 0)} | "
            f"{r.get('db_ops_per_reminder') or 0:.1f} | {load} |")


HEADER = ("| run | delivered | duplicated | lost | interrupted | delay p50 | delay p99 | "
          "max | throughput | steady rate | still in flight | db ops/reminder | load (1 min) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def medians(results):
    """Each figure's median over several rounds of one run (counts summed: a
    duplicate or a loss in any round shows)."""
    summed = ("reminders", "delivered", "duplicated", "lost", "interrupted", "not_final")
    merged = {key: sum(r[key] for r in results) for key in summed}
    for key in ("p50", "p99", "max", "per_s", "steady_per_s", "db_ops_per_reminder"):
        values = [r[key] for r in results if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    merged["load"] = (min(r["load"][0] for r in results), max(r["load"][1] for r in results))
    return merged


def parse_instances(text):
    instances = {}
    for part in filter(None, (text or "").split(",")):
        name, _, count = part.partition("=")
        instances[name.strip()] = int(count)
    return instances


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="burst,burst-2x2,spread,sustained,idle",
                        help=f"comma-separated, of {', '.join([*RUNS, 'idle'])}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of each run; the table adds each figure's median")
    parser.add_argument("--create", choices=["direct", "rpc"], default="direct",
                        help="direct (default): the reminders are written by the service's "
                             "create handler run here (create_direct); rpc: one "
                             "notifications.create each, as the gateway does (slow)")
    parser.add_argument("--count", type=int, help="a custom run: reminders")
    parser.add_argument("--window", type=float, default=0.0,
                        help="a custom run: seconds over which they fall due")
    parser.add_argument("--instances", default="", help="a custom run: e.g. mailer=2")
    parser.add_argument("--lead", type=float, default=None,
                        help="seconds from now to the first due time (default: from the count)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds after the last due time to wait for emails")
    parser.add_argument("--management", default=os.environ.get(
        "RABBIT_MANAGEMENT", "http://127.0.0.1:15672"))
    parser.add_argument("--faults", default="",
                        help=f"instead: fault runs, comma-separated, of {', '.join(FAULTS)} "
                             "(or all)")
    parser.add_argument("--keep", action="store_true", help="keep the runs' folders (logs)")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME=value for every service process (repeatable), e.g. "
                             "SMTP_POOL_SIZE=8")
    parser.add_argument("--profile", default=None,
                        help="a folder: py-spy flame graphs (raw) of every process per run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="reminders-bench-"))
    rows, failed = [], False
    if args.faults:
        names = list(FAULTS) if args.faults == "all" else args.faults.split(",")
        try:
            for name in names:
                result = fault_run(name, work, count=args.count or 1000,
                                   management=args.management,
                                   direct=args.create == "direct")
                rows.append(format_fault_row(FAULTS[name]["label"], result))
                print(f"  {name}: {rows[-1]} statuses {result['statuses']} "
                      f"smtp refusals {dict(result['refusals'])}", flush=True)
                failed |= bool(result["duplicated"] or result["lost"] or result["not_final"])
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print()
        print(FAULT_HEADER)
        print("\n".join(rows))
        sys.exit(1 if failed else 0)
    try:
        if args.count:
            runs = {"custom": dict(label=f"{args.count} over {args.window:g} s, "
                                         f"{args.instances or 'one process each'}",
                                   count=args.count, window=args.window,
                                   instances=parse_instances(args.instances))}
        else:
            runs = {name: RUNS[name] for name in args.runs.split(",") if name in RUNS}
        for name, spec in runs.items():
            results = []
            for round_ in range(1, args.repeat + 1):
                load = os.getloadavg()[0]
                result = delivery_run(args, f"{name}-{round_}" if args.repeat > 1 else name,
                                      spec, work)
                result["load"] = (load, os.getloadavg()[0])
                results.append(result)
                rows.append(format_row(spec["label"] + (f", round {round_}" if args.repeat > 1
                                                        else ""), result))
                failed |= bool(result["duplicated"] or result["lost"]
                               or result["not_final"])
            if args.repeat > 1:
                rows.append(format_row(f"**{spec['label']}: median of {args.repeat}**",
                                       medians(results)))
        idle = idle_run(args, work) if "idle" in args.runs.split(",") and not args.count else None
    finally:
        if args.keep:
            print(f"logs: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(HEADER)
    print("\n".join(rows))
    if idle:
        print(f"\nnothing due, database commands per second per process over "
              f"{idle['seconds']} s: " + ", ".join(
                  f"{name} {rate:.2f}" for name, rate in sorted(idle["per_process"].items())))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
