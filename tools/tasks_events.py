"""Operator tasks for events and search: `seed`, `rebuild-search`, `loadtest`, `projection-lag`.

tasks.py imports these into its namespace. Every task acts on the running system
(`invoke run` in another terminal), over RPC or HTTP like any other client.
"""
import json
import os
import random
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from invoke import Exit, task

ROOT = Path(__file__).resolve().parent.parent
# How many RPC calls `seed` keeps in flight: enough to keep every events worker busy.
SEED_IN_FLIGHT = 20
BULK_BATCH = 1000

CITIES = {
    "Paris": ("Europe/Paris", [
        ("New Morning", "7-9 Rue des Petites Écuries", 48.8729, 2.3526),
        ("Le Centquatre", "5 Rue Curial", 48.8899, 2.3711),
        ("Parc de la Villette", "211 Avenue Jean Jaurès", 48.8938, 2.3908),
        ("Station F", "5 Parvis Alan Turing", 48.8344, 2.3711),
        ("Palais de Tokyo", "13 Avenue du Président Wilson", 48.8640, 2.2966),
    ]),
    "Berlin": ("Europe/Berlin", [
        ("Berghain", "Am Wriezener Bahnhof", 52.5111, 13.4430),
        ("Tempelhofer Feld", "Tempelhofer Damm", 52.4731, 13.4019),
        ("Kulturbrauerei", "Schönhauser Allee 36", 52.5392, 13.4133),
        ("Factory Berlin", "Rheinsberger Str. 76/77", 52.5369, 13.3944),
    ]),
    "London": ("Europe/London", [
        ("Barbican Centre", "Silk Street", 51.5202, -0.0937),
        ("Southbank Centre", "Belvedere Road", 51.5067, -0.1167),
        ("Borough Market", "8 Southwark Street", 51.5055, -0.0910),
        ("Hyde Park", None, 51.5073, -0.1657),
    ]),
    "Lisbon": ("Europe/Lisbon", [
        ("LX Factory", "Rua Rodrigues de Faria 103", 38.7033, -9.1786),
        ("Time Out Market", "Av. 24 de Julho 49", 38.7069, -9.1459),
        ("MAAT", "Av. Brasília", 38.6957, -9.1923),
    ]),
    "Madrid": ("Europe/Madrid", [
        ("Matadero Madrid", "Plaza de Legazpi 8", 40.3922, -3.6973),
        ("Parque del Retiro", None, 40.4153, -3.6845),
        ("Círculo de Bellas Artes", "Calle de Alcalá 42", 40.4183, -3.6968),
    ]),
    "New York": ("America/New_York", [
        ("Brooklyn Bowl", "61 Wythe Ave", 40.7219, -73.9575),
        ("Central Park SummerStage", "Rumsey Playfield", 40.7711, -73.9716),
        ("The Public Theater", "425 Lafayette St", 40.7291, -73.9917),
        ("Chelsea Market", "75 9th Ave", 40.7424, -74.0061),
    ]),
    "Tokyo": ("Asia/Tokyo", [
        ("Shibuya Stream Hall", "3-21-3 Shibuya", 35.6573, 139.7030),
        ("Yoyogi Park", None, 35.6717, 139.6949),
    ]),
    "Montreal": ("America/Toronto", [
        ("Place des Arts", "175 Rue Sainte-Catherine O", 45.5081, -73.5669),
        ("Parc Jean-Drapeau", None, 45.5088, -73.5336),
    ]),
}

TOPICS = {
    "music": ["Jazz night", "Indie rock showcase", "Techno marathon", "Open mic", "String quartet",
              "Vinyl listening session"],
    "tech": ["Python meetup", "Rust workshop", "AI ethics panel", "Hackathon",
             "Startup pitch night", "Open source sprint"],
    "food": ["Street food festival", "Wine tasting", "Sourdough class", "Vegan brunch",
             "Cheese and cider evening"],
    "art": ["Gallery opening", "Life drawing", "Street art tour", "Ceramics workshop"],
    "sport": ["Park run", "Climbing meetup", "Five-a-side tournament", "Yoga by the river"],
    "film": ["Silent film with live piano", "Documentary screening", "Short film night"],
    "books": ["Book club", "Poetry reading", "Author signing", "Zine fair"],
    "outdoor": ["Sunrise hike", "Picnic concert", "Urban gardening day", "Night cycling tour"],
    "dance": ["Salsa social", "Swing class", "Contemporary dance showcase"],
    "family": ["Kids science fair", "Puppet theatre", "Board game afternoon"],
}
ORGANIZERS = ["City Culture Office", "Friends of the Park", "Local Makers", "Night Owls Collective",
              None]


def demo_event(rng, now):
    """One realistic event: a topic's title, a real venue, a start in the next 90 days."""
    topic = rng.choice(list(TOPICS))
    city = rng.choice(list(CITIES))
    zone, venues = CITIES[city]
    name, address, lat, lng = rng.choice(venues)
    # Jitter within ~300 m so venues are not all at one point.
    lat, lng = lat + rng.uniform(-0.003, 0.003), lng + rng.uniform(-0.003, 0.003)
    starts = (now + timedelta(days=rng.uniform(0, 90))).replace(second=0, microsecond=0)
    starts = starts.replace(minute=starts.minute // 15 * 15)
    ends = starts + timedelta(hours=rng.choice([1, 2, 3, 4])) if rng.random() < 0.6 else None
    extra = rng.sample([t for t in TOPICS if t != topic], k=rng.choice([0, 0, 1, 2]))
    title = f"{rng.choice(TOPICS[topic])} in {city}"
    return {
        "title": title,
        "description": f"{title} at {name}. Everyone welcome; bring friends.",
        "topics": [topic, *extra],
        "starts_at": _iso(starts),
        "ends_at": _iso(ends),
        "timezone": zone,
        "place": {"name": name, "address": address, "lat": round(lat, 6), "lng": round(lng, 6)},
        "organizer": rng.choice(ORGANIZERS),
    }


class Progress:
    """A one-line progress bar on stderr: [#####.....]  50% 5000/10000 412/s."""

    def __init__(self, total, label, width=30):
        self.total, self.label, self.width = total, label, width
        self.started = time.monotonic()

    def show(self, done):
        rate = done / max(time.monotonic() - self.started, 1e-6)
        if self.total:
            filled = int(self.width * done / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            text = f"{self.label} [{bar}] {100 * done // self.total:3d}% {done}/{self.total}"
        else:
            text = f"{self.label} {done}"
        sys.stderr.write(f"\r{text} {rate:.0f}/s ")
        sys.stderr.flush()

    def done(self, done):
        self.show(done)
        sys.stderr.write(f"\n{self.label}: {done} in {time.monotonic() - self.started:.1f}s\n")


@task(help={"events": "how many events to create (default 100)",
            "bulk": "write straight into the events database; the events service's outbox "
                    "sweeper then publishes every event_created (for 100,000 and more)",
            "rebuild": "with --bulk: store no messages and rebuild the search read model "
                       "instead (fastest; notifications does not hear of these events)",
            "seed": "random seed, for the same data every time"})
def seed(c, events=100, bulk=False, rebuild=False, seed=None):
    """Create N realistic demo events on the running system, with a progress bar.

    Default: `events.create` over RPC, as an admin would through the API (about
    20/s on SecantusDB). With --bulk, documents and their event_created messages go
    into the events database in batches (the shape the service writes) and the
    running events service's outbox sweeper publishes them, so search and
    notifications see them as usual (also about 20/s on SecantusDB; no rebuild
    needed). With --bulk --rebuild the messages are left out and the search read
    model is rebuilt from the events service afterwards, in pages of 500.
    """
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    progress = Progress(events, "seed")
    if bulk:
        _seed_bulk(rng, now, events, progress, publish=not rebuild)
        if rebuild:
            rebuild_search(c)
    else:
        _seed_rpc(rng, now, events, progress)


def _seed_rpc(rng, now, count, progress):
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy(_config(), timeout=60) as rpc:
        pending, done = [], 0
        for _ in range(count):
            pending.append(rpc.events.create.call_async(demo_event(rng, now)))
            if len(pending) >= SEED_IN_FLIGHT:
                pending.pop(0).result()
                done += 1
                if done % 50 == 0:
                    progress.show(done)
        for reply in pending:
            reply.result()
            done += 1
    progress.done(done)


def _seed_bulk(rng, now, count, progress, publish):
    from bus.mongo import connect
    from services.events.handlers import new_event

    client, db = connect(_config(), "events")
    # Older than the sweeper's grace period, so the next sweep publishes them.
    occurred = _iso(now - timedelta(minutes=1))
    done = 0
    try:
        while done < count:
            batch = []
            for _ in range(min(BULK_BATCH, count - done)):
                document, message = new_event(demo_event(rng, now))
                message["occurred_at"] = occurred
                batch.append({**document, "pending_events": [message] if publish else []})
            db.events.insert_many(batch, ordered=False)
            done += len(batch)
            progress.show(done)
    finally:
        client.close()
    progress.done(done)
    if publish:
        print("the events service's outbox sweeper is publishing them to search and "
              "notifications now")


@task(help={"status": "only show the progress of the current or last rebuild"})
def rebuild_search(c, status=False):
    """Rebuild the search read model from the events service, with a progress bar.

    Searches keep answering from the old read model until the new one is swapped in.
    """
    from nameko.standalone.rpc import ClusterRpcProxy

    config = _config()
    if status:
        with ClusterRpcProxy(config, timeout=30) as rpc:
            print(json.dumps(rpc.search.rebuild_status(), indent=2))
        return
    rebuild_search_of(config)


def rebuild_search_of(config, label="rebuild"):
    """Run search.rebuild on the system ``config`` joins and show its progress; returns
    how many events it copied. Also the bench's, for events seeded without messages."""
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy(config, timeout=30) as rpc:
        asked_at = _iso(datetime.now(timezone.utc) - timedelta(seconds=1))
        reply = rpc.search.rebuild.call_async()
        # Progress comes from a second client: one proxy waits on one reply at a time.
        with ClusterRpcProxy(config, timeout=30) as poll:
            progress = Progress(poll.events.count(), label)
            while True:
                time.sleep(0.5)
                state = poll.search.rebuild_status()
                ours = (state["started_at"] or "") >= asked_at
                progress.show(state["copied"] if ours else 0)
                if ours and not state["running"]:
                    break
        result = reply.result()
    progress.done(result["events"])
    return result["events"]


@task(help={"url": "gateway base URL (default http://$WEB_SERVER_ADDRESS)",
            "scenario": "mix (read mix 7 + write cycle 3), search (search-heavy) or smoke",
            "duration": "hold time, e.g. 60s or 2m (default: the scenario's)",
            "concurrency": "users (default: the scenario's)",
            "out": "where to write the JSON summary"})
def loadtest(c, url=None, scenario="mix", duration=None, concurrency=None, out=None):
    """Run a Taurus load test against the running gateway; writes and prints a JSON summary."""
    command = [sys.executable, str(ROOT / "loadtests" / "run.py"), "--scenario", scenario,
               "--url", url or _gateway_url()]
    for flag, value in (("--duration", duration), ("--concurrency", concurrency),
                        ("--out", out)):
        if value:
            command += [flag, str(value)]
    code = subprocess.run(command, cwd=ROOT).returncode
    if code:
        raise Exit(code=code)


@task(help={"url": "gateway base URL (default http://$WEB_SERVER_ADDRESS)",
            "samples": "how many writes to time (default 100)"})
def projection_lag(c, url=None, samples=100):
    """Time from a write's acknowledgement to its visibility in search (p50/p99)."""
    command = [sys.executable, str(ROOT / "loadtests" / "projection_lag.py"),
               "--url", url or _gateway_url(), "--samples", str(samples)]
    code = subprocess.run(command, cwd=ROOT).returncode
    if code:
        raise Exit(code=code)


def _config():
    """Config for joining the running system, as tasks.create_admin does."""
    import bus.config
    from tasks import _operator_env  # tasks.py owns how `invoke run` wires its children

    os.environ.update(_operator_env())
    return bus.config.load(ROOT / "config.yml")


def _gateway_url():
    return "http://" + (os.environ.get("WEB_SERVER_ADDRESS") or "127.0.0.1:8000")


def _iso(moment):
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
