"""Run a Taurus scenario against a running gateway and summarise it as JSON.

    python loadtests/run.py --scenario mix --url http://127.0.0.1:8000 [--duration 60s]

Scenarios: `mix` (mix.yml), `search` (search.yml), `smoke` (smoke.yml, for CI).
The write cycle needs an admin: ADMIN_USERNAME / ADMIN_PASSWORD, or else a
`loadtest_admin` account is created (or promoted) over RPC on the running system,
with a password generated once and kept in var/loadtest_admin.

The summary (requests, requests/s, p50/p90/p99 in ms and errors, per label and in
total) is computed from Taurus's own sample log (kpi*.jtl), written to --out
(default loadtests/results/<scenario>-<time>.json) and printed. The exit status
is Taurus's: non-zero when a pass/fail criterion failed (any error) or it crashed.
"""
import argparse
import csv
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCENARIOS = {"mix": "mix.yml", "search": "search.yml", "smoke": "smoke.yml"}
ADMIN = "loadtest_admin"


def admin_credentials():
    if os.environ.get("ADMIN_USERNAME") and os.environ.get("ADMIN_PASSWORD"):
        return os.environ["ADMIN_USERNAME"], os.environ["ADMIN_PASSWORD"]
    # create_admin keeps an existing account's password, so ours must be stable.
    path = ROOT / "var" / "loadtest_admin"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24) + "\n")
    password = path.read_text().strip()

    from nameko.standalone.rpc import ClusterRpcProxy

    import bus.config
    import bus.errors  # noqa: F401  (lets RPC rebuild our error classes)

    with ClusterRpcProxy(bus.config.load(), timeout=15) as rpc:
        rpc.users.create_admin(username=ADMIN, email=f"{ADMIN}@example.org", password=password)
    return ADMIN, password


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(samples):
    """Figures per label and in total from JTL rows (timeStamp and elapsed in ms)."""
    if not samples:
        return {"duration_s": 0, "labels": {}, "total": {"requests": 0}}
    ends = [int(s["timeStamp"]) for s in samples]
    duration = max((max(ends) - min(ends)) / 1000, 1e-3)
    by_label = defaultdict(list)
    for sample in samples:
        by_label[sample["label"] or "(locust error)"].append(sample)
    by_label["total"] = samples

    def figures(rows):
        elapsed = sorted(int(r["elapsed"]) for r in rows)
        failed = [r for r in rows if r["success"] != "true"]
        return {
            "requests": len(rows),
            "requests_per_s": round(len(rows) / duration, 1),
            "p50_ms": percentile(elapsed, 0.50),
            "p90_ms": percentile(elapsed, 0.90),
            "p99_ms": percentile(elapsed, 0.99),
            "errors": len(failed),
            "error_messages": dict(Counter(r["responseMessage"][:120] for r in failed)
                                   .most_common(5)),
        }

    labels = {label: figures(rows) for label, rows in sorted(by_label.items())}
    return {"duration_s": round(duration, 1), "total": labels.pop("total"), "labels": labels}


def read_samples(artifacts):
    samples = []
    for path in sorted(artifacts.glob("kpi*.jtl")):
        with open(path, newline="") as f:
            samples += list(csv.DictReader(f))
    return samples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="mix")
    parser.add_argument("--url", default="http://" + (os.environ.get("WEB_SERVER_ADDRESS")
                                                      or "127.0.0.1:8000"))
    parser.add_argument("--duration", help="hold time of every execution, e.g. 60s")
    parser.add_argument("--concurrency", type=int, help="users of every execution")
    parser.add_argument("--out", help="JSON summary path")
    args = parser.parse_args(argv)

    username, password = admin_credentials()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    artifacts = HERE / "results" / f"{args.scenario}-{stamp}"
    out = Path(args.out) if args.out else HERE / "results" / f"{args.scenario}-{stamp}.json"
    config = HERE / SCENARIOS[args.scenario]

    overrides = [f"settings.artifacts-dir={artifacts}"]
    with open(config) as f:
        text = f.read()
    for name in ("mix", "search"):
        if f"  {name}:\n" in text:
            overrides.append(f"scenarios.{name}.default-address={args.url}")
    executions = text.count("- executor: locust")
    for index in range(executions):
        if args.duration:
            overrides.append(f"execution.{index}.hold-for={args.duration}")
        if args.concurrency:
            overrides.append(f"execution.{index}.concurrency={args.concurrency}")

    command = [str(Path(sys.executable).with_name("bzt")), str(config), "-q"]
    for override in overrides:
        command += ["-o", override]
    env = {**os.environ, "ADMIN_USERNAME": username, "ADMIN_PASSWORD": password}
    started = time.monotonic()
    print(f"$ bzt {config.name} against {args.url} (artifacts: {artifacts})", flush=True)
    code = subprocess.run(command, cwd=HERE, env=env).returncode

    summary = {"scenario": args.scenario, "url": args.url, "bzt_exit_code": code,
               "wall_s": round(time.monotonic() - started, 1),
               **summarise(read_samples(artifacts))}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"summary written to {out}")
    if summary["total"]["requests"] == 0:
        print("error: no requests were made", file=sys.stderr)
        return code or 1
    return code


if __name__ == "__main__":
    sys.exit(main())
