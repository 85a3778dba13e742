"""Reading the events write model page by page, as a search rebuild and a gateway's
snapshot do (`events.all_events` -> `bus.mongo.page_by_id`): seconds a page and events
a second, at 10,000 and 100,000 events, against the earlier query.

    .venv/bin/python -m loadtests.id_pages [--sizes 10000,100000] [--old-pages 5]

It starts its own SecantusDB on a loopback port in a temporary directory (or uses --uri),
fills the events collection with `invoke seed`'s demo events through the service's
`new_event`, with the indexes of `storage.ensure_indexes`, and reads it all with
`all_events`, 500 a page, one page after the other. The earlier query ("every live id
after the last one", sorted) is timed for the first --old-pages pages only: on
SecantusDB each of its pages reads every document after the last id.
"""
import argparse
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from bus.mongo import connect
from services.events import handlers, storage
from tools.tasks_events import Progress, demo_event

PAGE = 500


def fill(db, count, rng):
    progress, now, done = Progress(count, "events written"), datetime.now(timezone.utc), 0
    while done < count:
        documents = [handlers.new_event(demo_event(rng, now))[0]
                     for _ in range(min(1000, count - done))]
        db[storage.COLLECTION].insert_many(documents, ordered=False)
        done += len(documents)
        progress.show(done)
    progress.done(done)


def read_all(db, total):
    """Seconds of each page, reading everything as all_events' callers do."""
    progress, seconds, after, read = Progress(total, "pages read"), [], None, 0
    while True:
        started = time.perf_counter()
        page = handlers.all_events(db, after, PAGE)
        seconds.append(time.perf_counter() - started)
        read += len(page)
        progress.show(read)
        if len(page) < PAGE:
            progress.done(read)
            return seconds, read
        after = page[-1]["id"]


def old_pages(db, pages):
    """Seconds of each of the first ``pages`` pages the earlier way."""
    seconds, after = [], None
    for _ in range(pages):
        query = {**storage.LIVE, **({"_id": {"$gt": after}} if after else {})}
        started = time.perf_counter()
        page = list(db[storage.COLLECTION].find(query, {"pending_events": 0})
                    .sort("_id", 1).limit(PAGE))
        seconds.append(time.perf_counter() - started)
        after = page[-1]["_id"]
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--old-pages", type=int, default=5)
    parser.add_argument("--uri", help="a MongoDB/SecantusDB to use instead of starting one")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    rng = random.Random(5)
    with tempfile.TemporaryDirectory(prefix="id_pages-") as tmp:
        server = None
        if args.uri is None:
            from tests.support.secantus import SecantusProcess
            server = SecantusProcess(Path(tmp) / "db", log_path=Path(tmp) / "secantus.log")
            server.start()
        client, _ = connect({"MONGO_URI": args.uri or server.uri}, "events")
        db = client[f"id_pages_{uuid.uuid4().hex[:8]}"]
        rows, have = [], 0
        try:
            storage.ensure_indexes(db)
            for size in sizes:
                fill(db, size - have, rng)
                have = size
                seconds, read = read_all(db, size)
                old = old_pages(db, args.old_pages)
                rows.append((size, read, sum(seconds), statistics.median(seconds),
                             max(seconds), statistics.median(old)))
        finally:
            client.drop_database(db.name)
            client.close()
            if server:
                server.stop()
    print(f"\n| events | read | all pages | events/s | a page, p50 / max | "
          f"earlier query, a page (first {args.old_pages}), p50 |")
    print("|---|---|---|---|---|---|")
    for size, read, total, p50, worst, old in rows:
        print(f"| {size:,} | {read:,} | {total:.1f} s | {read / total:,.0f} | "
              f"{p50 * 1000:.0f} / {worst * 1000:.0f} ms | {old * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
