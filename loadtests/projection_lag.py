"""Projection lag: from a write's HTTP acknowledgement to its visibility in search.

For each sample: POST /events (then PATCH it) as an admin, note when the gateway
answered, then poll GET /events?from=<its start>&to=<start + 1 s> every 5 ms until
the item (with the new version) shows up. Each probe has its own start minute, so
the poll is a narrow indexed range and adds little to what it measures. Prints
p50/p90/p99/max in ms (and writes them as JSON with --out).

    python loadtests/projection_lag.py --url http://127.0.0.1:8000 --samples 100

Admin credentials as in loadtests/run.py (ADMIN_USERNAME / ADMIN_PASSWORD, or
the load-test admin created over RPC).
"""
import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import admin_credentials, percentile  # noqa: E402

POLL_SECONDS = 0.005
GIVE_UP_SECONDS = 30


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_visible(session, url, event, version):
    """The moment search returns ``event`` at ``version``."""
    starts = datetime.fromisoformat(event["starts_at"])
    window = {"from": iso(starts), "to": iso(starts + timedelta(seconds=1))}
    started = time.perf_counter()
    while time.perf_counter() - started < GIVE_UP_SECONDS:
        response = session.get(f"{url}/events", params=window)
        response.raise_for_status()
        if any(i["id"] == event["id"] and i["version"] == version
               for i in response.json()["items"]):
            return time.perf_counter()
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{event['id']} not visible in search after {GIVE_UP_SECONDS}s")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    username, password = admin_credentials()
    session = requests.Session()
    token = session.post(f"{args.url}/auth/token",
                         json={"username": username, "password": password}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    # Far ahead, at a random minute per run, so probes never collide with real events.
    first = datetime.now(timezone.utc).replace(second=0, microsecond=0) + timedelta(
        days=4 * 365, minutes=random.randrange(10**6))
    lags = {"create": [], "update": []}
    created = []
    for sample in range(args.samples):
        response = session.post(f"{args.url}/events", headers=headers, json={
            "title": "Projection lag probe", "topics": ["loadtest"],
            "starts_at": iso(first + timedelta(minutes=sample))})
        acknowledged = time.perf_counter()
        response.raise_for_status()
        event = response.json()
        created.append(event["id"])
        lags["create"].append(wait_visible(session, args.url, event, 1) - acknowledged)
        response = session.patch(f"{args.url}/events/{event['id']}", headers=headers,
                                 json={"description": "moved"})
        acknowledged = time.perf_counter()
        response.raise_for_status()
        lags["update"].append(wait_visible(session, args.url, event, 2) - acknowledged)
    for event_id in created:
        session.delete(f"{args.url}/events/{event_id}", headers=headers)

    figures = {}
    for kind, values in lags.items():
        ms = sorted(round(v * 1000, 1) for v in values)
        figures[kind] = {"samples": len(ms), "p50_ms": percentile(ms, 0.5),
                         "p90_ms": percentile(ms, 0.9), "p99_ms": percentile(ms, 0.99),
                         "max_ms": ms[-1]}
    print(json.dumps({"projection_lag": figures, "url": args.url}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
