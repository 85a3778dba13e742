"""`invoke bench`: EventPost side by side with the single-service design it replaces (issue 7).

The work is in loadtests/bench (also `python -m loadtests.bench`); this task only
passes the options on. It starts its own EventPost and baseline on free ports, so it
needs no running system: only RabbitMQ (with its management API) and `wrk`.
"""
import shutil
import sys

from invoke import Exit, task


@task(auto_shortflags=False, help={
    "rounds": "rounds per data size; the targets alternate within each (default 3)",
    "seconds": "seconds per wrk run (default 10)",
    "mix_seconds": "seconds per seed-mix run (default 20)",
    "burst_seconds": "seconds of each 200-client run (default 30)",
    "sizes": "event counts to measure at, e.g. 50,10000 (the default)",
    "concurrency": "wrk connections and locust users (default 10)",
    "instances": "EventPost processes per service, e.g. gateway=2,notifications=2",
    "rss_events": "also seed up to this many events (e.g. 100000) and record RSS there; slow",
    "quick": "a quick check: 1 round, short runs, 50 then 1,000 events",
    "keep_data": "keep both databases under var/bench/<stamp>/",
    "out": "JSON path (default loadtests/results/bench-<stamp>.json)",
})
def bench(c, rounds=None, seconds=None, mix_seconds=None, burst_seconds=None, sizes=None,
          concurrency=None, instances=None, rss_events=None, quick=False, keep_data=False,
          out=None):
    """EventPost beside the single-service baseline: wrk, the seed mix, one table of medians.

    About 20-25 minutes with the defaults (3 rounds at 50 and at 10,000 events); progress
    on stderr, the table on stdout, everything as JSON under loadtests/results/.
    """
    if not shutil.which("wrk"):
        raise Exit("error: `wrk` is not installed: `invoke install` installs it "
                   "(apt-get install wrk)", code=1)
    from loadtests.bench import main

    argv = []
    for flag, value in (("--rounds", rounds), ("--seconds", seconds),
                        ("--mix-seconds", mix_seconds), ("--burst-seconds", burst_seconds),
                        ("--sizes", sizes), ("--concurrency", concurrency),
                        ("--instances", instances), ("--rss-events", rss_events),
                        ("--out", out)):
        if value is not None:
            argv += [flag, str(value)]
    argv += ["--quick"] * quick + ["--keep-data"] * keep_data
    sys.stdout.flush()
    code = main(argv)
    if code:
        raise Exit(code=code)
