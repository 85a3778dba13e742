"""Search latency at the current data size, one request at a time (no queueing).

Shows how the cost of a search grows with the number of events: run it after
`invoke seed` at 1,000, 10,000 and 100,000 events.

    python loadtests/search_cost.py --url http://127.0.0.1:8000 --requests 30
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
from run import percentile  # noqa: E402
from scenario_data import CITIES, TOPICS, iso  # noqa: E402


def shapes():
    """The searches the load scenarios make, as GET /events parameters."""
    now = datetime.now(timezone.utc)
    lat, lng = random.choice(list(CITIES.values()))
    return {
        "upcoming (default)": {"limit": 20},
        "topic": {"topic": random.choice(TOPICS), "limit": 20},
        "topic+near+7 days": {"topic": random.choice(TOPICS), "near": f"{lat},{lng}",
                              "radius_km": 25, "from": iso(now),
                              "to": iso(now + timedelta(days=7)), "limit": 20},
        "q word": {"q": random.choice(["jazz", "python", "picnic", "market"]), "limit": 20},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args(argv)
    session = requests.Session()
    timings = {name: [] for name in shapes()}
    errors = {name: 0 for name in shapes()}
    for _ in range(args.requests):
        for name, params in shapes().items():
            started = time.perf_counter()
            response = session.get(f"{args.url}/events", params=params, timeout=120)
            timings[name].append((time.perf_counter() - started) * 1000)
            errors[name] += response.status_code != 200  # e.g. 503: over the RPC timeout
    figures = {name: {"p50_ms": round(percentile(sorted(ms), 0.5)),
                      "p90_ms": round(percentile(sorted(ms), 0.9)), "errors": errors[name]}
               for name, ms in timings.items()}
    print(json.dumps({"url": args.url, "requests_each": args.requests, "search": figures},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
