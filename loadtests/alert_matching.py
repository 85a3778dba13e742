"""How long matching one new event against 1,000 saved searches takes (issue 11: "< 1 ms").
In-process, the alerts service's in-memory index alone (services/alerts/matching.py),
the work each alerts process does per event message before it records alerts.

The saved searches are a mix: 1 to 3 topics of 40 (10% without a topic), a third with
words, a third near one of five cities (5..50 km), a third within 7..90 days. The
events have 1 to 3 of the same topics, a title and description, a place in one of the
cities (or none), and start in the next 120 days.

    python -m loadtests.alert_matching [--searches 1000] [--events 2000] [--seed 1]
"""
import argparse
import random
import statistics
import time
from datetime import datetime, timedelta, timezone

from services.alerts.matching import SavedSearchIndex

TOPICS = [f"topic{i}" for i in range(40)]
WORDS = ["jazz", "quartet", "night", "festival", "talk", "open", "air", "food", "market",
         "film", "dance", "workshop", "family", "free", "live"]
CITIES = [(48.8566, 2.3522), (40.4168, -3.7038), (52.52, 13.405), (35.6614, 139.7155),
          (41.9028, 12.4964)]


def saved_searches(count, rng):
    for i in range(count):
        query = {}
        if rng.random() >= 0.1:
            query["topic"] = rng.sample(TOPICS, rng.randint(1, 3))
        if rng.random() < 1 / 3:
            query["q"] = " ".join(rng.sample(WORDS, rng.randint(1, 2)))
        if rng.random() < 1 / 3:
            lat, lng = rng.choice(CITIES)
            query["near"] = {"lat": lat + rng.uniform(-0.1, 0.1),
                             "lng": lng + rng.uniform(-0.1, 0.1)}
            query["radius_km"] = float(rng.randint(5, 50))
        if rng.random() < 1 / 3:
            query["within_days"] = rng.randint(7, 90)
        yield {"_id": f"{i:032x}", "query": query}


def events(count, now, rng):
    for i in range(count):
        starts = now + timedelta(minutes=rng.randint(60, 120 * 24 * 60))
        place = None
        if rng.random() < 0.8:
            lat, lng = rng.choice(CITIES)
            place = {"name": "Hall", "address": None, "lat": lat + rng.uniform(-0.3, 0.3),
                     "lng": lng + rng.uniform(-0.3, 0.3)}
        yield {
            "id": f"e{i:031x}", "status": "scheduled",
            "title": " ".join(rng.sample(WORDS, 3)).title(),
            "description": " ".join(rng.choice(WORDS) for _ in range(30)),
            "topics": rng.sample(TOPICS, rng.randint(1, 3)),
            "starts_at": starts.isoformat().replace("+00:00", "Z"), "place": place,
        }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=1000)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    now = datetime.now(timezone.utc)
    index = SavedSearchIndex()
    index.replace_all(saved_searches(args.searches, rng), stamp=1)
    stream = list(events(args.events, now, rng))
    for event in stream[:100]:  # warm-up
        index.match(event, now)
    timings, matched = [], 0
    for event in stream:
        started = time.perf_counter()
        found = index.match(event, now)
        timings.append((time.perf_counter() - started) * 1e6)
        matched += len(found)
    timings.sort()
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(f"{args.events} events against {len(index)} saved searches: "
          f"median {statistics.median(timings):.1f} µs, p99 {p99:.1f} µs, "
          f"max {timings[-1]:.1f} µs per event; {matched / len(stream):.1f} matches an event")
    return 0 if p99 < 1000 else 1


if __name__ == "__main__":
    raise SystemExit(main())
