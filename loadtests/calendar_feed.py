"""How long a calendar feed of 500 events takes to render (issue: "a 500-event feed
renders in < 200 ms"). In-process, the gateway's renderer alone, on events shaped as
API.md returns them, in three time zones (one VTIMEZONE each), with one alarm on half.

    python -m loadtests.calendar_feed [--events 500] [--runs 20]
"""
import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

from services.gateway import calendar

ZONES = ["Europe/Madrid", "America/New_York", "UTC"]


def events(count):
    start = datetime(2031, 1, 1, 18, tzinfo=timezone.utc)
    for i in range(count):
        at = (start + timedelta(hours=7 * i)).isoformat().replace("+00:00", "Z")
        yield {
            "id": f"{i:032x}", "title": f"Event {i}: a title of a realistic length, too",
            "description": "An evening of music, talks and food. " * 8, "topics": ["music", "food"],
            "starts_at": at, "ends_at": None, "timezone": ZONES[i % len(ZONES)],
            "place": {"name": "Hall", "address": "1 Main Street", "lat": 40.4, "lng": -3.7},
            "organizer": "Friends of music", "status": "scheduled", "version": 1 + i % 3,
            "created_at": "2030-01-01T00:00:00Z", "updated_at": "2030-01-02T00:00:00Z",
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    feed = list(events(args.events))
    alarms = {e["id"]: [(e["starts_at"], "Reminder")] for e in feed[::2]}
    calendar.render(feed[:1], "warm-up")  # VTIMEZONE building is cached per zone and years
    timings = []
    for run in range(args.runs):
        began = time.perf_counter()
        body = calendar.render(feed, "EventPost", alarms=alarms)
        timings.append((time.perf_counter() - began) * 1000)
        print(f"run {run + 1}/{args.runs}: {timings[-1]:.1f} ms", flush=True)
    print(f"{args.events} events, {len(body):,} bytes: median {statistics.median(timings):.1f} ms, "
          f"max {max(timings):.1f} ms (target < 200 ms)")


if __name__ == "__main__":
    main()
