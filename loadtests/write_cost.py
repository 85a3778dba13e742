"""What one API write costs EventPost, process by process (issue 7's write bound).

    python -m loadtests.write_cost                  # 150 cycles of POST, PATCH, DELETE
    python -m loadtests.write_cost --cycles 300

Starts EventPost as the bench does (loadtests.bench.targets: the whole system as
`invoke run` starts it, in a RabbitMQ vhost of its own), with every service process
counting its database commands (query_counter/, a pymongo CommandListener loaded
from outside services/). One client then writes through the gateway, one request at
a time: create an event, change it, delete it, ``--cycles`` times. It prints, per
API write: the CPU milliseconds of each process (SecantusDB, every service; from
/proc, so work that follows a write, the outbox and every consumer, is counted
too), the database commands of each service by command and collection, and the
latency of each kind of request. One client keeps the figures about cost, not about
queueing; run it on a quiet machine and compare commits side by side. What the
processes spend idle in that window (timers, sweepers) is counted too.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

from bus.messages import iso
from loadtests.bench.targets import EventPost
from loadtests.procstat import commands_sent, counting_env, cpu_seconds

SETTLE_SECONDS = 3.0  # after the last write: the consumers finish what it caused


def body(index):
    starts = datetime.now(timezone.utc) + timedelta(days=400, minutes=index)
    return {"title": f"Write cost {index}", "description": "loadtests/write_cost.py",
            "topics": ["music"], "starts_at": iso(starts),
            "ends_at": iso(starts + timedelta(hours=2)), "timezone": "UTC",
            "place": {"name": "Hall", "address": None, "lat": 40.4168, "lng": -3.7038}}


def cpu_by_process(eventpost):
    return {name: cpu_seconds(pid) for name, pid in eventpost.processes()}


def write_cycles(base_url, headers, cycles):
    """{request kind: [seconds]}, one request at a time."""
    latency = {"POST": [], "PATCH": [], "DELETE": []}
    session = requests.Session()
    for index in range(cycles):
        began = time.perf_counter()
        created = session.post(f"{base_url}/events", json=body(index), headers=headers)
        latency["POST"].append(time.perf_counter() - began)
        created.raise_for_status()
        event_id = created.json()["id"]
        began = time.perf_counter()
        session.patch(f"{base_url}/events/{event_id}", headers=headers,
                      json={"title": f"Moved {index}"}).raise_for_status()
        latency["PATCH"].append(time.perf_counter() - began)
        began = time.perf_counter()
        session.delete(f"{base_url}/events/{event_id}", headers=headers).raise_for_status()
        latency["DELETE"].append(time.perf_counter() - began)
        if (index + 1) % 50 == 0:
            print(f"  {index + 1}/{cycles} cycles", file=sys.stderr, flush=True)
    return latency


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m loadtests.write_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=150,
                        help="create-change-delete cycles (150: 450 writes)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="eventpost-write-cost-"))
    counts = work / "counts"
    counts.mkdir()
    os.environ.update(counting_env(counts))  # the service processes inherit it
    eventpost = EventPost(work / "eventpost")
    try:
        eventpost.start()
        eventpost.create_accounts()
        headers = eventpost.login_admin()
        names = dict((pid, name) for name, pid in eventpost.processes())
        time.sleep(SETTLE_SECONDS)  # start-up work (indexes, first sweeps) out of the way
        writes = 3 * args.cycles
        before, started = cpu_by_process(eventpost), time.time()
        latency = write_cycles(eventpost.base_url, headers, args.cycles)
        time.sleep(SETTLE_SECONDS)
        after, ended = cpu_by_process(eventpost), time.time()
    finally:
        eventpost.stop()
    commands = {names[pid]: sent
                for pid, sent in commands_sent(counts, started, ended).items() if pid in names}
    report(args, writes, before, after, ended - started, latency, commands)


def report(args, writes, before, after, seconds, latency, commands):
    print(f"\n{writes} API writes ({args.cycles} cycles of POST, PATCH, DELETE), one at a "
          f"time, {seconds:.1f} s with {SETTLE_SECONDS:.0f} s to settle\n")
    print("| process | CPU ms per write | database commands per write |")
    print("|---|---|---|")
    total_cpu = total_commands = 0.0
    for name in sorted(before, key=lambda n: before[n] - after[n]):
        cpu = 1000 * (after[name] - before[name]) / writes
        total_cpu += cpu
        if name not in commands:  # sent none: the database itself, the mail sink, the gateway
            print(f"| {name} | {cpu:.2f} | — |")
            continue
        count = sum(commands[name].values()) / writes
        total_commands += count
        print(f"| {name} | {cpu:.2f} | {count:.2f} |")
    print(f"| **all** | **{total_cpu:.2f}** | **{total_commands:.2f}** |\n")
    print("| process | command collection | per write |")
    print("|---|---|---|")
    for name in sorted(commands):
        for (command, collection), count in commands[name].most_common():
            if count / writes >= 0.01:
                print(f"| {name} | {command} {collection} | {count / writes:.2f} |")
    print("\n| request | p50 | p90 |")
    print("|---|---|---|")
    for kind, seconds_each in latency.items():
        ordered = sorted(seconds_each)
        print(f"| {kind} | {1000 * statistics.median(ordered):.1f} ms "
              f"| {1000 * ordered[int(0.9 * (len(ordered) - 1))]:.1f} ms |")


if __name__ == "__main__":
    main()
