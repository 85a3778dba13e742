"""How long a 500-occurrence series takes to be created and searchable (issue 11:
"a 500-occurrence series is created and searchable in < 2 s").

    python -m loadtests.series [--runs 5] [--count 500]
    python -m loadtests.series --url http://127.0.0.1:8000 --username admin --password ...

Without ``--url`` it starts the whole system as `invoke run` does (tools.system.System,
one process a service, the embedded SecantusDB in a temporary folder) in a throwaway
RabbitMQ vhost, and makes an admin over RPC. Each run POSTs a daily series of
``--count`` occurrences and measures, from the moment the POST is sent:
- created: the 201;
- searchable: GET /events?series_id= (through the gateway, its in-memory read model)
  finds the last occurrence;
- search service: the same search from before the gateway's window (``from`` a year
  ago), which the search service answers from its read model: every occurrence is
  projected there, from the outbox's `event_created` messages;
- GET /series/{id} answers with ``--count`` occurrences.
Prints every run and the medians; with its own system, each run waits until every
queue is empty (the last run's messages consumed by search, notifications, alerts).
"""
import argparse
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from bus import recurrence
from bus.messages import iso

POLL = 0.01
SLOW_POLL = 0.5
PATIENCE = 60.0


def run_once(http, base, headers, count, first_start):
    body = {"title": "Daily yoga", "topics": ["sport"], "timezone": "Europe/Madrid",
            "starts_at": first_start.isoformat().replace("+00:00", "Z"),
            "recurrence": f"FREQ=DAILY;COUNT={count}"}
    began = time.perf_counter()
    response = http.post(f"{base}/events", json=body, headers=headers, timeout=60)
    created = time.perf_counter() - began
    response.raise_for_status()
    series_id = response.json()["series_id"]
    last = iso(recurrence.occurrences(body["recurrence"], first_start, None,
                                      body["timezone"])[-1][0])
    figures = {"created": created}

    def until(name, done, poll=POLL):
        while not done():
            if time.perf_counter() - began > PATIENCE:
                raise SystemExit(f"{name}: not after {PATIENCE:.0f} s")
            time.sleep(poll)
        figures[name] = time.perf_counter() - began

    def found_last(since):
        answer = http.get(f"{base}/events", params={"series_id": series_id, "from": since,
                                                    "limit": 100}, timeout=30).json()
        return any(item["starts_at"] == last for item in answer["items"])

    until("searchable", lambda: found_last(last))
    a_year_ago = (datetime.now(timezone.utc) - timedelta(days=365)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")

    def in_search_service():
        answer = http.get(f"{base}/events", params={
            "series_id": series_id, "from": a_year_ago, "to": _after(last), "limit": 100,
        }, timeout=30).json()
        if not answer["items"]:
            return False
        # page to the end: all `count` must be there
        seen, cursor = len(answer["items"]), answer["next_cursor"]
        while cursor is not None:
            answer = http.get(f"{base}/events", params={
                "series_id": series_id, "from": a_year_ago, "to": _after(last), "limit": 100,
                "cursor": cursor}, timeout=30).json()
            seen += len(answer["items"])
            cursor = answer["next_cursor"]
        return seen == count

    # polled less often: each poll is several searches the search service must answer
    until("search service", in_search_service, poll=SLOW_POLL)
    until("GET /series", lambda: http.get(f"{base}/series/{series_id}", timeout=30)
          .json().get("occurrences") == count)
    return figures


def _after(text):
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")) + timedelta(seconds=1)
    return moment.isoformat().replace("+00:00", "Z")


def measure(base, headers, runs, count, settle=None):
    http = requests.Session()
    results = []
    for run in range(runs):
        if settle is not None:
            settle()  # the last run's messages consumed: each run starts on an idle system
        # each run in its own future stretch, so runs do not share a search window
        first = datetime(2031, 1, 1, 18, tzinfo=timezone.utc) + timedelta(days=800 * run)
        figures = run_once(http, base, headers, count, first)
        results.append(figures)
        print(f"run {run + 1}/{runs}: " + ", ".join(
            f"{name} {seconds * 1000:.0f} ms" for name, seconds in figures.items())
            + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"{count} occurrences, median of {runs} runs: " + ", ".join(
        f"{name} {statistics.median(r[name] for r in results) * 1000:.0f} ms"
        for name in results[0]) + " (target: created and searchable < 2 s)")


def login(base, username, password):
    response = requests.post(f"{base}/auth/token", json={"username": username,
                                                         "password": password}, timeout=30)
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def own_system(runs, count, management):
    from nameko.standalone.rpc import ClusterRpcProxy

    from loadtests.reminders import Vhost
    from tools.system import System, free_port

    with tempfile.TemporaryDirectory(prefix="series-bench-") as work, \
            Vhost(management) as vhost:
        system = System(var_dir=Path(work) / "var", mongo_port=free_port(),
                        smtp_port=free_port(), echo=print,
                        env={"AMQP_URI": vhost.uri, "MONGO_URI": "", "CONSUL_HTTP_ADDR": "",
                             "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
                             "LOG_LEVEL": "WARNING",
                             "JWT_SECRET": "bench-" + uuid.uuid4().hex * 2})
        with system:
            username, password = f"bench_{uuid.uuid4().hex[:8]}", "bench password 1"
            with ClusterRpcProxy({"AMQP_URI": vhost.uri, "serializer": "json"},
                                 timeout=30) as rpc:
                rpc.users.create_admin(username=username, email=f"{username}@example.org",
                                       password=password)
            measure(system.base_url, login(system.base_url, username, password), runs, count,
                    settle=lambda: _idle(management, vhost.name))


def _idle(management, vhost):
    """Wait until no queue of ``vhost`` holds a message (every consumer caught up)."""
    url = f"{management.rstrip('/')}/api/queues/{requests.utils.quote(vhost, safe='')}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        queues = requests.get(url, auth=("guest", "guest"), timeout=60).json()
        if all(q.get("messages", 0) == 0 for q in queues):
            return
        time.sleep(0.5)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--url", help="a running system's gateway (else one is started)")
    parser.add_argument("--username")
    parser.add_argument("--password")
    parser.add_argument("--management", default="http://127.0.0.1:15672")
    args = parser.parse_args(argv)
    if args.url:
        measure(args.url.rstrip("/"), login(args.url.rstrip("/"), args.username,
                                            args.password), args.runs, args.count)
    else:
        own_system(args.runs, args.count, args.management)


if __name__ == "__main__":
    main()
