"""How search cost grows with the read model: p50/p90 of one search at 1,000, 10,000
and 100,000 events, measured on the search service's query layer directly.

    .venv/bin/python -m loadtests.search_scaling [--sizes 1000,10000,100000] [--repeat 20]

Seeding 100,000 events through the running system takes about 25 minutes on a small
machine, so this skips the gateway, RPC and the bus: it starts its own SecantusDB
server on a loopback port in a temporary directory (or uses --uri, e.g. a MongoDB),
fills a search read model with realistic projected events and calls
`services.search.queries.search(db, query)` one query at a time (no concurrency).

The documents are what the projection stores: `invoke seed`'s `demo_event` (real
venues in several cities, topics, starts over the next 90 days) goes through the
events service's `new_event` and the projection's `from_message`; indexes come from
`storage.ensure_indexes`. By default one collection grows 1k -> 10k -> 100k and is
measured at each step (--fresh: an empty database per size).

Query types, as the gateway builds them (docs/contracts.md, search):
- upcoming:          the default search (from=now, sort starts_at, limit 20)
- topic:             one topic
- topic+near+7d:     one topic, 10 km around a city centre, the next 7 days
- q word:            one word of the titles
- deep page (6th):   the default search's page after following next_cursor 5 times
                     (only that last request is timed)

Prints a table and JSON (p50/p90 ms per size and query type, the median number of
items returned, fill times, p50 growth ratios). Latencies include pymongo and the
loopback round trips but not RPC or HTTP.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bus.messages import iso, utc_now
from bus.mongo import connect
from loadtests.run import percentile
from loadtests.scenario_data import CITIES, TOPICS
from services.events.handlers import new_event
from services.search import projection, queries, storage
from tools.tasks_events import Progress, demo_event

SIZES = (1000, 10000, 100000)
BATCH = 1000
WORDS = ["jazz", "python", "picnic", "market"]  # as search_cost.py: words of demo titles
DEEP_FOLLOWS = 5
QUERY_TYPES = ("upcoming", "topic", "topic+near+7d", "q word", "deep page (6th)")


def fill(db, rng, now, count, label):
    """Add ``count`` projected demo events to the live read model, in batches."""
    collection = storage.live(db)
    progress = Progress(count, label)
    started, done = time.monotonic(), 0
    while done < count:
        documents = []
        for _ in range(min(BATCH, count - done)):
            _, message = new_event(demo_event(rng, now))
            documents.append(projection.from_message(message))
        storage.note_latest_start(db, max(d["starts_at"] for d in documents))
        collection.insert_many(documents, ordered=False)
        done += len(documents)
        progress.show(done)
    progress.done(done)
    return time.monotonic() - started


def search_query(**given):
    """A search.search query as the gateway's EventSearch builds it."""
    return {"topics": None, "words": None, "from": iso(utc_now()), "to": None, "near": None,
            "radius_km": 10.0, "status": "scheduled", "sort": "starts_at", "limit": 20,
            "cursor": None, **given}


def shapes(rng):
    now = utc_now()
    lat, lng = CITIES[rng.choice(list(CITIES))]
    return {
        "upcoming": search_query(),
        "topic": search_query(topics=[rng.choice(TOPICS)]),
        "topic+near+7d": search_query(topics=[rng.choice(TOPICS)],
                                      near={"lat": lat, "lng": lng}, radius_km=10.0,
                                      **{"from": iso(now)}, to=iso(now + timedelta(days=7))),
        "q word": search_query(words=[rng.choice(WORDS)]),
        "deep page (6th)": search_query(),
    }


def timed(db, query):
    started = time.perf_counter()
    result = queries.search(db, query)
    return (time.perf_counter() - started) * 1000, result


def run_one(db, name, query):
    """(ms, items) of one search; for the deep page, of the page after 5 cursor follows."""
    if name == "deep page (6th)":
        for _ in range(DEEP_FOLLOWS):
            cursor = queries.search(db, query)["next_cursor"]
            if cursor is None:
                return None, 0  # fewer than 6 pages of results
            query = {**query, "cursor": cursor}
    ms, result = timed(db, query)
    return ms, len(result["items"])


def measure(db, rng, repeat, warmup=2):
    timings = {name: [] for name in QUERY_TYPES}
    items = {name: [] for name in QUERY_TYPES}
    for round_ in range(warmup + repeat):
        for name, query in shapes(rng).items():  # interleaved, so drift hits every type
            ms, count = run_one(db, name, query)
            if round_ >= warmup and ms is not None:
                timings[name].append(ms)
                items[name].append(count)
    figures = {}
    for name in QUERY_TYPES:
        ms, counts = sorted(timings[name]), sorted(items[name])
        figures[name] = {"p50_ms": _round(percentile(ms, 0.5)),
                         "p90_ms": _round(percentile(ms, 0.9)),
                         "items_p50": percentile(counts, 0.5), "samples": len(ms)}
    return figures


def ratios(results, sizes):
    growth = {}
    for smaller, larger in zip(sizes, sizes[1:], strict=False):
        key = f"{larger}/{smaller}"
        growth[key] = {}
        for name in QUERY_TYPES:
            a, b = results[smaller][name]["p50_ms"], results[larger][name]["p50_ms"]
            growth[key][name] = round(b / a, 2) if a and b else None
    return growth


def table(results, sizes, growth):
    head = f"{'query type':<17}" + "".join(f"{f'{n:,} p50/p90 ms':>22}" for n in sizes)
    head += f"{'items':>7}" + "".join(f"{'p50 x ' + _short(k):>16}" for k in growth)
    lines = [head, "-" * len(head)]
    for name in QUERY_TYPES:
        row = f"{name:<17}"
        for n in sizes:
            f = results[n][name]
            row += f"{_cell(f['p50_ms']) + ' / ' + _cell(f['p90_ms']):>22}"
        row += f"{str(results[sizes[-1]][name]['items_p50']):>7}"
        for key in growth:
            value = growth[key][name]
            row += f"{('x' + str(value)) if value is not None else '-':>16}"
        lines.append(row)
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="comma-separated event counts, ascending (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per query type")
    parser.add_argument("--fresh", action="store_true",
                        help="an empty database per size instead of growing one collection")
    parser.add_argument("--uri", help="use this MongoDB/SecantusDB instead of starting one "
                                      "(a throwaway database is created and dropped)")
    parser.add_argument("--seed", type=int, default=3, help="random seed (default 3)")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})

    with tempfile.TemporaryDirectory(prefix="search_scaling-") as tmp:
        server = None
        uri = args.uri
        if uri is None:
            from tests.support.secantus import SecantusProcess
            server = SecantusProcess(Path(tmp) / "db", log_path=Path(tmp) / "secantus.log")
            server.start()
            uri = server.uri
        client, _ = connect({"MONGO_URI": uri}, "search")
        name = f"search_scaling_{uuid.uuid4().hex[:8]}"
        try:
            report = run(client, name, sizes, args)
        finally:
            client.drop_database(name)
            client.close()
            if server:
                server.stop()
    report["backend"] = "SecantusDB (own process, 127.0.0.1)" if args.uri is None else "--uri"

    print()
    print(table(report["results"], sizes, report["p50_growth"]))
    print(f"\nitems = median items returned at {sizes[-1]:,}; fills: "
          + ", ".join(f"{k}: {v['seconds']}s" for k, v in report["fills"].items()))
    print(f"machine: {os.cpu_count()} cores, shared with other work; load average "
          f"{report['machine']['load_before']} before, {report['machine']['load_after']} after")
    text = json.dumps({**report, "results": {str(k): v for k, v in report["results"].items()}},
                      indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def run(client, name, sizes, args):
    rng_data, rng_query = random.Random(args.seed), random.Random(args.seed + 1)
    now = datetime.now(timezone.utc)
    load_before = _load()
    results, fills, have = {}, {}, 0
    db = client[name]
    for size in sizes:
        if args.fresh or have > size:
            client.drop_database(name)
            db, have = client[name], 0
        if have == 0:
            storage.ensure_indexes(db)
        seconds = fill(db, rng_data, now, size - have, f"fill {have:,}->{size:,}")
        fills[str(size)] = {"added": size - have, "seconds": round(seconds, 1),
                            "per_s": round((size - have) / max(seconds, 1e-6))}
        have = storage.live(db).count_documents({})
        print(f"measuring at {have:,} events ({args.repeat} runs per query type)...",
              file=sys.stderr)
        results[size] = measure(db, rng_query, args.repeat)
    return {
        "what": "services.search.queries.search(db, query), one at a time, p50/p90 in ms",
        "sizes": sizes, "repeat": args.repeat, "mode": "fresh" if args.fresh else "grow",
        "results": results,
        "p50_growth": ratios(results, sizes),
        "fills": fills,
        "machine": {"cores": os.cpu_count(), "shared": True, "load_before": load_before,
                    "load_after": _load()},
    }


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def _round(value):
    return None if value is None else round(value, 1)


def _short(pair):
    """'10000/1000' -> '10k/1k'."""
    return "/".join(f"{int(n) // 1000}k" if int(n) % 1000 == 0 else n for n in pair.split("/"))


def _cell(value):
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    sys.exit(main())
