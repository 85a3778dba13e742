"""What a write costs on SecantusDB as writes add up, with pymongo's retryable writes
on (its default) and off (EventPost's, bus/mongo.py: ``MONGO_RETRY_WRITES``).

One client, one upsert after another, on a server of its own; prints the mean cost
of each block of writes. With them on, the server keeps a record per write (30
minutes, at most 10,000) and scans, past the cap sorts, all of them on every write.

    python -m loadtests.retryable_writes [--writes 14000] [--block 2000]
"""
import argparse
import tempfile
import time
from pathlib import Path

from pymongo import MongoClient

from tests.support.secantus import SecantusProcess


def costs(uri, retry_writes, writes, block):
    client = MongoClient(uri, retryWrites=retry_writes, journal=True)
    collection = client.bench[f"retry_{retry_writes}"]
    means, started = [], time.perf_counter()
    try:
        for n in range(writes):
            collection.update_one({"_id": n}, {"$set": {"n": n}}, upsert=True)
            if n % block == block - 1:
                now = time.perf_counter()
                means.append((now - started) / block * 1000)
                started = now
                print(f"  retryWrites={retry_writes}: {n + 1:,} writes, last {block:,} at "
                      f"{means[-1]:.2f} ms each", flush=True)
    finally:
        client.close()
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=14000)
    parser.add_argument("--block", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        server = SecantusProcess(Path(folder))
        server.start()
        try:
            # off first: the server's records of the "on" run would weigh on it
            results = {flag: costs(server.uri, flag, args.writes, args.block)
                       for flag in (False, True)}
        finally:
            server.stop()
    blocks = [f"{(i + 1) * args.block:,}" for i in range(len(results[True]))]
    print(f"\n| writes so far | {' | '.join(blocks)} |")
    print(f"|---|{'---|' * len(blocks)}")
    for flag, means in results.items():
        print(f"| ms per upsert, retryWrites={flag} | {' | '.join(f'{m:.2f}' for m in means)} |")


if __name__ == "__main__":
    main()
