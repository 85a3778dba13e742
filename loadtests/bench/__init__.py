"""`invoke bench`: EventPost measured side by side with the single-service design it replaces.

    invoke bench                      # 3 rounds, 50 then 10,000 events (about 20-25 min)
    invoke bench --quick              # a quick check (1 round, short runs, 50 then 1,000)
    python -m loadtests.bench --help  # the same, without invoke

Both systems start on free loopback ports (EventPost as `invoke run` starts it, in a
RabbitMQ vhost of its own; the baseline, loadtests/baseline, under gunicorn -w 7 on
its own SecantusDB), get the same generated events, and are driven alike:

- single routes with Debian's wrk (a Python load generator saturates first), 10
  connections, 2 threads, --latency; GET /events/{id} rotates over the seeded ids;
- the seed mix with locust (loadtests/locustfile.py, FastHttpUser, 10 users: 7
  readers, 3 writers), run headless by the bench itself, not through Taurus;
- projection lag during EventPost's mix (drivers.LagProbe), 200 clients for 30 s on
  GET /events and GET /events/{id}, and the RSS of every process of both systems.

Targets alternate over the rounds (EventPost, baseline, EventPost, ...) so machine
noise hits both, and the table quotes medians and ratios with issue 7's targets.
Progress goes to stderr; the table (and every round's raw figures) to stdout; all of
it as JSON to loadtests/results/bench-<stamp>.json. Everything started is stopped,
also on Ctrl-C or SIGTERM.

Rooms: flow.py (order of things, options), targets.py (the two systems: start,
seed, stop), drivers.py (wrk, locust, lag probe, RSS), report.py (the table).
"""
from loadtests.bench.flow import main

__all__ = ["main"]
