"""``invoke bench`` / ``python -m loadtests.bench``: the order of things, and the options.

start both systems -> accounts -> for each size (50, 10,000): seed both alike, then
``--rounds`` rounds of [EventPost routes + mix, baseline routes + mix] -> at the
largest size: RSS, then 200 clients on GET /events and GET /events/{id} -> with
``--rss-events``: seed on and RSS again -> stop everything -> one table + JSON.
"""
import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from loadtests.bench import report
from loadtests.bench.drivers import (
    LagProbe,
    gateways_answering,
    locust_mix,
    rss_of,
    settle,
    wrk_run,
    wrk_script,
)
from loadtests.bench.targets import Baseline, EventPost, say, seed_events
from tools.system import PROJECT_ROOT, StartError
from tools.tasks_events import CITIES

RESULTS = PROJECT_ROOT / "loadtests" / "results"
QUICK = {"rounds": 1, "seconds": 3, "mix_seconds": 5, "burst_seconds": 3,
         "sizes": "50,1000"}
DEFAULTS = {"rounds": 3, "seconds": 10, "mix_seconds": 20, "burst_seconds": 30,
            "sizes": "50,10000"}
SEARCH_RADIUS_KM = 10


class Interrupted(Exception):
    """SIGTERM, turned into an exception so every ``finally`` runs."""


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description="EventPost side by side with the single-service baseline (issue 7).")
    parser.add_argument("--rounds", type=int, help="rounds per size; targets alternate (3)")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run (10)")
    parser.add_argument("--mix-seconds", type=float, help="seconds per mix run (20)")
    parser.add_argument("--burst-seconds", type=float,
                        help="seconds of each many-clients run (30)")
    parser.add_argument("--sizes", help="event counts to measure at, ascending (50,10000)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="wrk connections and locust users (10)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--burst-clients", type=int, default=200,
                        help="connections of the many-clients runs (200)")
    parser.add_argument("--client-timeout", type=float, default=2.0,
                        help="seconds before wrk counts a request as timed out (2)")
    parser.add_argument("--rss-events", type=int, default=0,
                        help="also seed up to this many events and record RSS there "
                             "(e.g. 100000), written without messages and followed by a "
                             "search rebuild and gateway catch-ups (EventPost.seed)")
    parser.add_argument("--instances", default="",
                        help="EventPost processes per service, e.g. gateway=2,notifications=2")
    parser.add_argument("--quick", action="store_true",
                        help="a quick check: 1 round, 3 s runs, 5 s mix, 3 s bursts, "
                             "sizes 50,1000 (each overridable)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the events")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep both databases under var/bench/<stamp>/ afterwards")
    parser.add_argument("--out", help="JSON path (default loadtests/results/bench-<stamp>.json)")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sizes = sorted({int(s) for s in str(args.sizes).split(",") if s.strip()})
    if not args.sizes or args.sizes[0] < 1:
        parser.error("--sizes needs at least one positive count")
    args.instances = _instances(args.instances)
    return args


def _instances(text):
    counts = {}
    for item in (text or "").split(","):
        if item.strip():
            name, _, count = item.partition("=")
            counts[name.strip()] = int(count)
    return counts


def main(argv=None):
    args = parse(argv)
    if not shutil.which("wrk"):
        print("error: `wrk` is not installed; `invoke install` installs it "
              "(or: apt-get install wrk)", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    var_dir = PROJECT_ROOT / "var" / "bench" / stamp
    out = Path(args.out) if args.out else RESULTS / f"bench-{stamp}.json"
    results = {
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "started_at": datetime.now(timezone.utc).isoformat(), "machine": _machine(),
        "commit": _commit(), "var_dir": str(var_dir), "runs": [], "lag": {}, "bursts": [],
        "rss": {}, "failed": [], "interrupted": False,
    }
    eventpost = EventPost(var_dir / "eventpost", instances=args.instances)
    baseline = Baseline(var_dir / "baseline")
    began = time.monotonic()

    def on_sigterm(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        say(f"var dir {var_dir}; EventPost in its own vhost {eventpost.vhost.name}")
        eventpost.start()
        baseline.start()
        eventpost.create_accounts()
        Bench(args, eventpost, baseline, results, var_dir).run()
    except (KeyboardInterrupt, Interrupted):
        results["interrupted"] = True
        say("interrupted; stopping everything")
    except StartError as exc:
        results["failed"].append(f"start: {exc}")
        say(f"error: {exc}")
    except Exception as exc:
        results["failed"].append(f"{type(exc).__name__}: {exc}")
        say(f"error: {traceback.format_exc()}")
    finally:
        # a second Ctrl-C or SIGTERM must not cut the stop short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            _stop(eventpost, baseline, args.keep_data)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, previous)
    results["wall_s"] = round(time.monotonic() - began, 1)
    results["table"] = report.summary_table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    _print(results, out)
    crashed = results["failed"] or results["interrupted"] or any(
        "error" in r for r in results["runs"])
    return 1 if crashed else 0


def _stop(eventpost, baseline, keep_data):
    started = time.monotonic()
    for target in (baseline, eventpost):
        try:
            target.stop()
            if not keep_data:
                target.remove_data()
        except Exception as exc:  # go on stopping the other one
            say(f"stopping {target.name} failed: {exc}")
    say(f"stopped both systems in {time.monotonic() - started:.1f}s")


def _print(results, out):
    print("\n## invoke bench: EventPost beside the single-service baseline\n")
    settings = results["settings"]
    print(f"{settings['rounds']} round(s), wrk {settings['seconds']:g} s per route at "
          f"concurrency {settings['concurrency']} (-t {settings['threads']}), mix "
          f"{settings['mix_seconds']:g} s with {settings['concurrency']} locust users; "
          f"medians over rounds; {results['machine']['cpus']} CPUs, load average at start "
          f"{results['machine']['load_average']}; commit {results['commit']}; "
          f"{results['wall_s']:.0f} s in all.\n")
    print(results["table"])
    print("\n### every run\n")
    print(report.rounds_table(results))
    if results["rss"]:
        print("\n### RSS per process\n")
        print(report.rss_table(results))
    for failure in results["failed"]:
        print(f"\nFAILED: {failure}")
    if results["interrupted"]:
        print("\nINTERRUPTED: the figures above are partial.")
    print(f"\nall figures as JSON: {out}")


class Bench:
    """The measuring, once both systems answer."""

    def __init__(self, args, eventpost, baseline, results, var_dir):
        self.args, self.eventpost, self.baseline = args, eventpost, baseline
        self.results, self.work = results, var_dir / "runs"
        self.work.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(args.seed)
        self.bodies = []
        self.lag_probes = {}  # size -> every round's LagProbe, pooled for the table

    def run(self):
        self.gateways = gateways_answering(self.eventpost.base_url)
        say(f"gateway processes naming themselves: {sorted(self.gateways) or 'none'}")
        for size in self.args.sizes:
            self.seed_to(size)
            search = self.search_query()
            say(f"search route: topic {search['topic']!r} near {search['city']} "
                f"({search['upcoming_matches']} seeded matches in the next 7 days)")
            for round_number in range(1, self.args.rounds + 1):
                for target in (self.eventpost, self.baseline):
                    self.measure(size, round_number, target, search)
        largest = self.args.sizes[-1]
        self.record_rss(largest)
        for route in ("list", "by_id"):
            self.burst(largest, route)
        if self.args.rss_events > largest:
            self.seed_to(self.args.rss_events, announce=False)  # EventPost.seed says why
            self.record_rss(self.args.rss_events)

    # -- data ---------------------------------------------------------------------

    def seed_to(self, size, announce=True):
        count = size - len(self.bodies)
        say(f"seeding {count:,} more events into both (to {size:,})")
        bodies = seed_events(self.rng, datetime.now(timezone.utc), count)
        self.bodies += bodies
        starts = [_parse(b["starts_at"]) for b in self.bodies]
        # every seeded start, and none of the writers' (5 years ahead) or probes' (4)
        window = {"from": _iso(min(starts) - timedelta(minutes=1)),
                  "to": _iso(max(starts) + timedelta(minutes=1))}
        self.baseline.seed(bodies)
        self.eventpost.seed(bodies, window, announce=announce)

    def search_query(self):
        """The topic and city with the most seeded events in the next 7 days within
        SEARCH_RADIUS_KM of the city's centre (the mean of its venues)."""
        now = datetime.now(timezone.utc)
        centres = {city: (sum(v[2] for v in venues) / len(venues),
                          sum(v[3] for v in venues) / len(venues))
                   for city, (_, venues) in CITIES.items()}
        matches = Counter()
        for body in self.bodies:
            if not now <= _parse(body["starts_at"]) < now + timedelta(days=7):
                continue
            place = body["place"]
            for city, (lat, lng) in centres.items():
                if _km(lat, lng, place["lat"], place["lng"]) <= SEARCH_RADIUS_KM:
                    for topic in body["topics"]:
                        matches[topic, city] += 1
        (topic, city), count = (matches.most_common(1) or [(("music", "Paris"), 0)])[0]
        lat, lng = centres[city]
        return {"topic": topic, "city": city, "near": f"{lat:.4f},{lng:.4f}",
                "upcoming_matches": count}

    # -- runs -----------------------------------------------------------------------

    def measure(self, size, round_number, target, search):
        ids = [f"/events/{event_id}" for event_id in target.event_ids]
        by_id = wrk_script(self.work / f"{target.name}-ids-{size}.lua", ids)
        plain = wrk_script(self.work / "plain.lua")
        base = target.base_url
        if target is self.eventpost:
            now = datetime.now(timezone.utc)
            query = (f"topic={search['topic']}&near={search['near']}"
                     f"&radius_km={SEARCH_RADIUS_KM}&from={_iso(now)}"
                     f"&to={_iso(now + timedelta(days=7))}")
            routes = [("by_id", f"{base}/events/", by_id, None),
                      ("list", f"{base}/events?limit=50", plain, None),
                      ("search", f"{base}/events?{query}", plain, None),
                      ("me", f"{base}/users/me", plain, target.user_headers)]
        else:
            routes = [("by_id", f"{base}/events/", by_id, None),
                      ("list", f"{base}/events", plain, None)]
        for route, url, script, headers in routes:
            self._record(size, round_number, target, route, wrk_run, url, script,
                         self.args.seconds, self.args.concurrency, self.args.threads, headers,
                         self.args.client_timeout)
        self._record(size, round_number, target, "mix", self.mix, size, round_number, target)

    def mix(self, size, round_number, target):
        csv_prefix = self.work / f"mix-{size}-{round_number}-{target.name}"
        if target is not self.eventpost:
            return locust_mix(target.base_url, "baseline", self.args.mix_seconds,
                              self.args.concurrency, csv_prefix)
        headers = target.login_admin()  # a fresh token: a full bench outlasts one
        probe = LagProbe(target.base_url, headers, self.gateways)
        probe.start()
        try:
            figures = locust_mix(target.base_url, "eventpost", self.args.mix_seconds,
                                 self.args.concurrency, csv_prefix,
                                 admin_token=headers["Authorization"].split()[1])
        finally:
            probe.stop()
        self._add_lag(size, probe)
        figures["projection_lag"] = probe.figures()
        return figures

    def _add_lag(self, size, probe):
        """Pool the probe's samples over every round at one size."""
        pooled = self.lag_probes.setdefault(size, [])
        pooled.append(probe)
        merged = LagProbe(probe.base_url, probe.headers)
        for each in pooled:
            for kind in merged.samples:
                merged.samples[kind] += each.samples[kind]
            merged.not_visible += each.not_visible
            merged.polls_by_writer += each.polls_by_writer
            merged.errors += each.errors
            merged.gateways |= each.gateways
        self.results["lag"][str(size)] = merged.figures()

    def _record(self, size, round_number, target, route, measure, *arguments):
        label = f"{size:,} events, round {round_number}/{self.args.rounds}, {target.name} " \
                f"{report.ROUTES[route][0 if target is self.eventpost else 1]}"
        say(f"{label} ...")
        entry = {"size": size, "round": round_number, "target": target.name, "route": route}
        try:
            entry.update(measure(*arguments))
        except (KeyboardInterrupt, Interrupted):
            raise
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            say(f"  FAILED: {entry['error']}")
        else:
            say(f"  {entry['requests_per_s']:,.1f} req/s, p50 {entry['p50_ms']} ms, "
                f"p99 {entry['p99_ms']} ms, {entry['errors']} errors"
                + (f", {entry['write_cycles_per_s']} write cycles/s" if route == "mix" else "")
                + (f"; projection lag p99 {entry['projection_lag']['all']['p99_ms']} ms "
                   f"({entry['projection_lag']['samples']} samples)"
                   if "projection_lag" in entry else ""))
        self.results["runs"].append(entry)
        return entry

    def burst(self, size, route):
        """--burst-clients connections for --burst-seconds on one route, each target once."""
        burst = {"size": size, "route": report.ROUTES[route][0], "clients":
                 self.args.burst_clients, "seconds": self.args.burst_seconds,
                 "timeout_s": self.args.client_timeout}
        plain = wrk_script(self.work / "plain.lua")
        for target in (self.eventpost, self.baseline):
            if route == "by_id":
                script = wrk_script(self.work / f"{target.name}-ids-{size}.lua",
                                    [f"/events/{i}" for i in target.event_ids])
                url = f"{target.base_url}/events/"
            else:
                script = plain
                url = f"{target.base_url}/events" + (
                    "?limit=50" if target is self.eventpost else "")
            say(f"{self.args.burst_clients} clients for {self.args.burst_seconds:g}s on "
                f"{target.name} {url.replace(target.base_url, '')} ...")
            try:
                figures = wrk_run(url, script, self.args.burst_seconds, self.args.burst_clients,
                                  self.args.threads, None, self.args.client_timeout)
                say(f"  {figures['requests_per_s']:,.1f} req/s, {figures['errors']} errors "
                    f"({figures['socket_errors']}, {figures['non_2xx']} non-2xx), "
                    f"{figures['timeouts']} timeouts")
            except Exception as exc:
                figures = {"error": f"{type(exc).__name__}: {exc}"}
                say(f"  FAILED: {figures['error']}")
            burst[target.name] = figures
            if not settle(f"{target.base_url}/events?limit=1"):
                say(f"  {target.name} is still slow a minute after the burst")
        self.results["bursts"].append(burst)

    def record_rss(self, size):
        processes = []
        for target in (self.eventpost, self.baseline):
            for row in rss_of(target.processes()):
                processes.append({"system": target.name, **row})
        self.results["rss"][str(size)] = processes
        totals = Counter()
        for p in processes:
            totals[p["system"]] += p["rss_mb"]
        say(f"RSS at {size:,} events: " + ", ".join(f"{k} {v:,.0f} MB" for k, v in
                                                    totals.items()))


def _parse(stamp):
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _iso(moment):
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _km(lat1, lng1, lat2, lng2):
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def _machine():
    return {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def _commit():
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=PROJECT_ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
