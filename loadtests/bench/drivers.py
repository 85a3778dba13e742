"""What puts load on a target and what reads the figures back.

- ``wrk_run``: one route under Debian's ``wrk`` (closed loop, keep-alive). A Lua
  script, written per run, rotates over event ids when given some and reports the
  totals as one JSON line from wrk's ``done`` hook, so nothing parses wrk's text.
- ``locust_mix``: the seed mix (loadtests/locustfile.py) under ``locust --headless``
  (not Taurus: the bench needs locust's CSV per run and the CSV is all it reads).
- ``LagProbe``: write through the gateway, poll search until the write shows.
- ``rss_of``: resident memory of a process and everything it started, from /proc.

Tools run in their own process group and die with the bench (tools.system's
launcher rules); ``run_tool`` stops them on any interruption.
"""
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import requests

from loadtests.run import percentile
from tools.system import _die_with_parent

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE.parent / "locustfile.py"
GATEWAY_HEADER = "X-EventPost-Gateway"  # per-process id the gateway may send


def run_tool(argv, timeout, env=None, cwd=None):
    """Run a load tool to completion; returns (exit code, stdout, stderr).

    Any exception here (Ctrl-C, SIGTERM turned into an exception, a timeout) stops the
    tool's whole process group before it propagates."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, cwd=cwd, preexec_fn=_die_with_parent)
    try:
        out, err = process.communicate(timeout=timeout)
    except BaseException:
        stop_group(process)
        raise
    return process.returncode, out, err


def stop_group(process, grace=3.0):
    """SIGTERM the process's group, SIGKILL what is left after ``grace`` seconds."""
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


# -- wrk -------------------------------------------------------------------------

WRK_REPORT = "BENCH_JSON "
_WRK_LUA = """-- written by loadtests/bench for one wrk run
local paths = {%(paths)s}
local next_thread = 0

function setup(thread)
  -- each thread starts elsewhere in the list, so they do not ask for the same ids
  thread:set("offset", next_thread * 7919)
  next_thread = next_thread + 1
end

function init(args)
  counter = offset or 0
end

%(request)s

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, ' ..
    '"p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""
_WRK_ROTATE = """request = function()
  counter = counter + 1
  return wrk.format(nil, paths[counter %% #paths + 1])
end"""


def wrk_script(path, paths=()):
    """A wrk Lua script at ``path``: rotate over ``paths`` (if any), report as JSON."""
    Path(path).write_text(_WRK_LUA % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "request": _WRK_ROTATE % () if paths else "-- the URL's own path on every request",
        "marker": WRK_REPORT,
    })
    return path


def wrk_run(url, script, seconds, connections, threads=2, headers=None, timeout_s=2.0):
    """Drive ``url`` with wrk; returns requests/s, p50/p90/p99 (ms), errors, socket errors.

    ``errors`` counts non-2xx answers (wrk counts status >= 400) plus socket errors;
    ``timeouts`` are requests without an answer within ``timeout_s`` (wrk's --timeout)."""
    argv = ["wrk", "-t", str(min(threads, connections)), "-c", str(connections),
            "-d", f"{seconds:g}s", "--timeout", f"{timeout_s:g}s", "--latency", "-s", str(script)]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    code, out, err = run_tool([*argv, url], timeout=seconds + 60)
    line = next((x for x in out.splitlines() if x.startswith(WRK_REPORT)), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures (exit {code}): {err.strip() or out[-500:]}")
    raw = json.loads(line[len(WRK_REPORT):])
    if raw["requests"] == 0:  # would otherwise read as "0 errors, 0 timeouts"
        raise RuntimeError(f"no request completed in {seconds:g}s ({raw})")
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / max(raw["duration_us"] / 1e6, 1e-6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "non_2xx": raw["status"],
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
        "errors": raw["status"] + socket_errors,
        "timeouts": raw["timeout"],
        "kb_per_response": round(raw["bytes"] / max(raw["requests"], 1) / 1024, 2),
        "connections": connections,
        "seconds": seconds,
    }


def settle(url, quiet_s=0.5, in_a_row=3, timeout=60):
    """Wait until ``url`` answers ``in_a_row`` single requests within ``quiet_s`` each:
    after many clients a server may still be working off their queued requests."""
    deadline, fast = time.monotonic() + timeout, 0
    while fast < in_a_row and time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            requests.get(url, timeout=10)
            fast = fast + 1 if time.perf_counter() - started < quiet_s else 0
        except requests.RequestException:
            fast = 0
            time.sleep(0.2)
    return fast >= in_a_row


# -- locust ----------------------------------------------------------------------

def locust_mix(base_url, target, seconds, users, csv_prefix, admin_token=None):
    """The seed mix against ``target`` ("eventpost" or "baseline") for ``seconds``.

    Every user starts within a fraction of a second and the stats are reset once
    they all run (--reset-stats), so ramp-up stays out; the admin's token comes
    ready-made, so no login is measured. Returns aggregate requests/s, p50/p99 over
    all requests, write cycles/s (a cycle ends with its DELETE), errors and figures
    per request name."""
    env = {**os.environ, "MIX_TARGET": target, "PYTHONWARNINGS": "ignore"}
    if admin_token:
        env["ADMIN_TOKEN"] = admin_token
    argv = [str(Path(sys.executable).with_name("locust")), "-f", str(LOCUSTFILE),
            "--headless", "--host", base_url, "-u", str(users), "-r", str(users * 10),
            "-t", f"{max(round(seconds), 1) + 1}s", "--reset-stats", "--only-summary",
            "--csv", str(csv_prefix), "--loglevel", "WARNING", "--stop-timeout", "5"]
    code, out, err = run_tool(argv, timeout=seconds + 90, env=env, cwd=LOCUSTFILE.parent)
    stats_path = Path(f"{csv_prefix}_stats.csv")
    if not stats_path.exists():
        raise RuntimeError(f"locust wrote no stats (exit {code}): {err[-1500:]}")
    with open(stats_path, newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows.pop("Aggregated", None)
    if total is None or int(total["Request Count"]) == 0:
        raise RuntimeError(f"locust made no requests (exit {code}): {err[-1500:]}")

    def figures(row):
        count, failed = int(row["Request Count"]), int(row["Failure Count"])
        return {"requests": count, "requests_per_s": round(float(row["Requests/s"]), 1),
                "p50_ms": _number(row["50%"]), "p99_ms": _number(row["99%"]), "errors": failed}

    names = {name: figures(row) for name, row in rows.items()}
    deletes = names.get("DELETE /events/{id}", {"requests_per_s": 0, "requests": 0, "errors": 0})
    done_share = 1 - deletes["errors"] / max(deletes["requests"], 1)
    failures = []
    failures_path = Path(f"{csv_prefix}_failures.csv")
    if failures_path.exists():
        with open(failures_path, newline="") as f:
            failures = [{"name": r["Name"], "error": r["Error"][:200],
                         "occurrences": int(r["Occurrences"])} for r in csv.DictReader(f)]
    return {**figures(total),
            "write_cycles_per_s": round(deletes["requests_per_s"] * done_share, 2),
            "by_name": names, "failures": failures, "users": users, "seconds": seconds,
            "locust_exit_code": code}


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


# -- projection lag ----------------------------------------------------------------

class LagProbe(threading.Thread):
    """Write through the gateway, then poll search until the write shows; repeat.

    Each sample alternates a POST (a new event, visible at version 1) and a PATCH of
    it (version 2); then the event is deleted. Probes start at their own minute four
    years ahead, so the poll (``from``/``to`` one second wide) finds only them.

    Writes go over fresh connections, so on a SO_REUSEPORT port they spread over
    the gateway processes. Polls go over kept-alive connections, one held per
    process (``X-EventPost-Gateway`` names it): the kernel picks a process per
    connection, so a held connection reaches the same process every time. With
    more than one process, each write is polled through a process other than the
    one that acknowledged it (the lag across processes); otherwise through the one
    there is (``mode`` says which).
    """

    POLL_SECONDS = 0.01
    GIVE_UP_SECONDS = 10.0
    PAUSE_SECONDS = 0.05
    DISCOVERY_CONNECTIONS = 24  # fresh connections tried to find every process

    def __init__(self, base_url, headers, known_gateways=()):
        super().__init__(name="lag-probe", daemon=True)
        self.base_url, self.headers = base_url, headers
        self.address = urlsplit(base_url)
        self.gateways = set(known_gateways)
        self.held = {}  # gateway id -> its kept-alive HTTPConnection
        self.samples = {"create": [], "update": []}
        self.not_visible = 0
        self.polls_by_writer = 0  # cross-process polls the writer answered: should stay 0
        self.errors = []
        self.stopping = threading.Event()
        self.minute = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(
            days=4 * 365, minutes=int(time.time()) % 500_000)

    @property
    def cross_process(self):
        return len(self.gateways) > 1

    @property
    def mode(self):
        if self.cross_process:
            return f"through another gateway process ({len(self.gateways)} seen)"
        if self.gateways:
            return "through the same gateway process (only one answered)"
        return f"through the same gateway (no {GATEWAY_HEADER} header)"

    def run(self):
        try:
            while not self.stopping.is_set():
                try:
                    self._one_sample()
                except Exception as exc:  # a failed write is a figure too; go on
                    self.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    self._let_go()  # a connection may be what failed: find them again
                    self.stopping.wait(0.5)
        finally:
            self._let_go()

    def stop(self):
        self.stopping.set()
        self.join(self.GIVE_UP_SECONDS + 5)

    def _hold_a_connection_per_process(self):
        for _ in range(self.DISCOVERY_CONNECTIONS):
            connection = HTTPConnection(self.address.hostname, self.address.port, timeout=30)
            _, reader, _ = self._get(connection, "/events?limit=1")
            if reader is None:  # the gateway names no process: any connection will do
                self.held[None] = connection
                return
            if reader in self.held:
                connection.close()
            else:
                self.held[reader] = connection
                self.gateways.add(reader)
            if len(self.held) == len(self.gateways) > 1:
                return  # every process seen so far is held

    def _let_go(self):
        for connection in self.held.values():
            connection.close()
        self.held.clear()

    def _get(self, connection, path):
        """(status, answering gateway id, parsed JSON) over ``connection``."""
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return (response.status, response.getheader(GATEWAY_HEADER),
                json.loads(body) if response.status == 200 else None)

    def _poller(self, writer):
        """A held connection to a process other than the writer (when there is one)."""
        if not self.held:
            self._hold_a_connection_per_process()
        others = [c for g, c in self.held.items() if g != writer]
        return (others or list(self.held.values()))[0]

    def _one_sample(self):
        self.minute += timedelta(minutes=1)
        starts = self.minute.strftime("%Y-%m-%dT%H:%M:%SZ")
        response = requests.post(f"{self.base_url}/events", headers=self.headers, timeout=30,
                                 json={"title": "Projection lag probe", "topics": ["loadtest"],
                                       "starts_at": starts})
        acknowledged = time.perf_counter()
        response.raise_for_status()
        event = response.json()
        try:
            self._time_visibility("create", event, 1, response, acknowledged)
            if self.stopping.is_set():
                return
            response = requests.patch(f"{self.base_url}/events/{event['id']}", timeout=30,
                                      headers=self.headers, json={"description": "moved"})
            acknowledged = time.perf_counter()
            response.raise_for_status()
            self._time_visibility("update", event, 2, response, acknowledged)
        finally:
            requests.delete(f"{self.base_url}/events/{event['id']}", headers=self.headers,
                            timeout=30)
        self.stopping.wait(self.PAUSE_SECONDS)

    def _time_visibility(self, kind, event, version, write_response, acknowledged):
        writer = write_response.headers.get(GATEWAY_HEADER)
        if writer:
            self.gateways.add(writer)
        poller = self._poller(writer)
        path = "/events?" + urlencode({"from": event["starts_at"], "status": "all",
                                       "to": _plus_one_second(event["starts_at"])})
        while time.perf_counter() - acknowledged < self.GIVE_UP_SECONDS:
            status, reader, page = self._get(poller, path)
            if self.cross_process and reader == writer:
                self.polls_by_writer += 1  # would make the figure a same-process lag
            if status == 200 and any(i["id"] == event["id"] and i["version"] >= version
                                     for i in page["items"]):
                self.samples[kind].append((time.perf_counter() - acknowledged) * 1000)
                return
            time.sleep(self.POLL_SECONDS)
        self.not_visible += 1

    def figures(self):
        every = sorted(self.samples["create"] + self.samples["update"])
        result = {"samples": len(every), "not_visible_in_10s": self.not_visible,
                  "polls_by_writer": self.polls_by_writer, "mode": self.mode,
                  "cross_process": self.cross_process,
                  "gateways_seen": sorted(self.gateways),
                  "errors": self.errors[:5], "error_count": len(self.errors)}
        for kind, values in (("all", every), *self.samples.items()):
            values = sorted(values)
            result[kind] = {"samples": len(values),
                            "p50_ms": _round(percentile(values, 0.5)),
                            "p99_ms": _round(percentile(values, 0.99)),
                            "max_ms": _round(values[-1] if values else None)}
        return result


def gateways_answering(base_url, tries=20):
    """The X-EventPost-Gateway ids seen over ``tries`` fresh connections (may be empty)."""
    seen = set()
    for _ in range(tries):
        try:
            response = requests.get(f"{base_url}/events", params={"limit": 1}, timeout=10,
                                    headers={"Connection": "close"})
        except requests.RequestException:
            continue
        if response.headers.get(GATEWAY_HEADER):
            seen.add(response.headers[GATEWAY_HEADER])
    return seen


def _plus_one_second(stamp):
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _round(value):
    return None if value is None else round(value, 1)


# -- memory ----------------------------------------------------------------------

def _proc_table():
    """{pid: (parent pid, rss kB, command)} of every live process (Linux /proc)."""
    table = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines()
                          if ":" in line)
            command = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:  # exited while we looked
            continue
        rss = int(fields.get("VmRSS", "0 kB").split()[0])  # absent for kernel threads
        table[int(status.parent.name)] = (int(fields["PPid"]), rss, command)
    return table


def rss_of(named_pids):
    """RSS of each named process and of everything it started, as a list of rows.

    ``named_pids``: [(name, pid)]; a descendant is reported as ``<name> > <its pid>``."""
    table = _proc_table()
    children = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    rows = []
    for name, root in named_pids:
        stack = [(root, name)]
        while stack:
            pid, label = stack.pop()
            if pid not in table:
                continue
            _, rss, command = table[pid]
            rows.append({"name": label, "pid": pid, "rss_mb": round(rss / 1024, 1),
                         "command": command[:160]})
            stack += [(child, f"{name} > {child}") for child in sorted(children.get(pid, []))]
    return rows


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
