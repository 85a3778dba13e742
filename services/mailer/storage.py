"""The mailer's sent log: per send key, one hand-over mark and one outcome, each
written once (the key is the ``_id``, so a second insert fails).

- ``sends``: the hand-over mark. An instance inserts it right before the SMTP DATA
  command: whoever inserts it has the key, and nobody else will ever send it. The
  notifications service withdraws a reminder by inserting it first
  (``withdrawn: True``). ``holder`` is the instance, ``at`` the time.
- ``outcomes``: ``sent`` or ``failed`` (with ``reason``), for good.

A mark with no outcome is a mail being handed over by a live instance, or one
whose holder died during the hand-over (older than the lease): that key ends
``failed`` with the reason ``interrupted``, never sent again.

Inserts, not updates, because SecantusDB inserts in bulk cost a fraction of
updates; ``GroupWriter`` puts what concurrent sends write at the same moment into
one round trip. (Entries of the earlier schema, one document per key in
``sends`` with its ``status``, still count as outcomes.)
"""
import hashlib
import json
import logging
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import eventlet
from eventlet.event import Event
from pymongo.errors import BulkWriteError, PyMongoError

log = logging.getLogger(__name__)

SENDS = "sends"
OUTCOMES = "outcomes"
DUPLICATE_KEY = 11000
CHUNK = 50  # keys per $in: SecantusDB matches $in linearly, so big lists cost n squared


def _chunks(items, size=CHUNK):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _insert_new(collection, documents):
    """Insert what is not there yet; the ``_id`` of each document that was already there."""
    if not documents:
        return set()
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise
        return {documents[e["index"]]["_id"] for e in errors}
    return set()


def take(db, marks):
    """Insert hand-over marks ``{_id: send_key, kind, notification_id, holder, at}``;
    the send keys that someone else (or a withdrawal) has already."""
    return _insert_new(db[SENDS], marks)


def withdraw(db, send_keys, holder, now):
    """Mark each key withdrawn unless it was taken before: (withdrawn, taken) keys."""
    marks = [{"_id": key, "withdrawn": True, "holder": holder, "at": now} for key in send_keys]
    there = _insert_new(db[SENDS], marks)
    withdrawn = set(send_keys) - there
    for key, mark in find_marks(db, there).items():
        if mark.get("withdrawn"):
            withdrawn.add(key)
    return sorted(withdrawn), sorted(set(send_keys) - withdrawn)


def release(db, send_key, holder):
    """Give a key back after a transient failure: the server did not take the mail."""
    db[SENDS].delete_one({"_id": send_key, "holder": holder, "withdrawn": {"$ne": True}})


def find_marks(db, send_keys):
    found = {}
    for chunk in _chunks(send_keys):
        found.update((m["_id"], m) for m in db[SENDS].find({"_id": {"$in": chunk}}))
    return found


def record(db, outcomes):
    """Insert final outcomes ``{_id: send_key, status, at, reason, notification_id}``;
    returns the ones already recorded (by someone else), as stored."""
    there = _insert_new(db[OUTCOMES], outcomes)
    return find_outcomes(db, there) if there else {}


def find_outcomes(db, send_keys):
    """{send key: outcome} for the keys that have one (the earlier schema included)."""
    found = {}
    for chunk in _chunks(send_keys):
        found.update((o["_id"], o) for o in db[OUTCOMES].find({"_id": {"$in": chunk}}))
    missing = [key for key in send_keys if key not in found]
    for key, mark in find_marks(db, missing).items():
        if mark.get("status") in ("sent", "failed"):  # the earlier schema
            found[key] = {"_id": key, "status": mark["status"], "at": mark.get("finished_at"),
                          "reason": mark.get("reason"),
                          "notification_id": mark.get("notification_id")}
    return found


class GroupWriter:
    """Group commit: items submitted while a write is in flight go together in the next.

    ``submit(item)`` returns an Event that is sent ``write(items)``'s result for the
    item (``write`` returns one result per item, in order) or the exception it
    raised. One greenthread writes; every sending greenthread just waits for its
    own answer, so N concurrent sends cost about one round trip, not N. ``linger``:
    seconds to wait for more items before a write, for writes nobody waits on
    (each write has a fixed cost in the database, whatever its size).
    """

    def __init__(self, write, name, linger=0.0):
        self.write = write
        self.name = name
        self.linger = linger
        self._queue = []
        self._ready = Event()
        self._thread = None
        self._writing = 0

    def submit(self, item):
        done = Event()
        self._queue.append((item, done))
        if not self._ready.ready():
            self._ready.send()
        if self._thread is None or self._thread.dead:
            self._thread = eventlet.spawn(self._run)
        return done

    def _run(self):
        while True:
            if not self._queue:
                self._ready.wait()
                self._ready = Event()
                continue
            if self.linger:
                self._writing = len(self._queue)  # drain() waits for the lingering ones too
                eventlet.sleep(self.linger)
            batch, self._queue = self._queue, []
            self._writing = len(batch)
            try:
                results = self.write([item for item, _ in batch])
            except Exception as error:  # noqa: BLE001  each waiter decides what it means
                for _, done in batch:
                    done.send_exception(error)
                continue
            finally:
                self._writing = 0
            for (_, done), result in zip(batch, results, strict=False):
                done.send(result)

    def drain(self, timeout=10):
        """Wait until everything submitted so far is written (tests, shutdown)."""
        with eventlet.Timeout(timeout, False):
            while self._queue or self._writing:
                eventlet.sleep(0.01)

    def stop(self):
        if self._thread is not None:
            self._thread.kill()
            self._thread = None


def retrying(operation, what, stopped=lambda: False, first_pause=0.2, max_pause=5.0):
    """Run ``operation()`` until it succeeds (a database restart must not lose what we
    are holding); logs each failure."""
    pause = first_pause
    while True:
        try:
            return operation()
        except PyMongoError as error:
            if stopped():
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, error, pause)
            eventlet.sleep(pause)
            pause = min(max_pause, pause * 2)


class Journal:
    """What happened to each send key this process took, in a local file, as it happens.

    Lines (JSON): ``take`` (before its mark is inserted), ``data`` (right before the
    DATA command), the final ``outcome`` (the moment the server answers, before the
    database has it), ``release`` (given back). A line written to a file survives a
    kill -9 (it is in the kernel once ``write`` returns), so when this process dies,
    the next mailer on the machine reads its file (``recover``): outcomes are
    recorded; a key taken but never sent (no ``data``) is given back, to be sent
    after all; only a key killed between ``data`` and the answer is ``interrupted``.
    Without this, every mark a killed process had written without a recorded
    outcome (a database round trip each) would be ``interrupted``.

    Each process holds an exclusive ``flock`` on its own file while it lives: a file
    nobody holds is a dead process's. The folder is per database (``journal_folder``),
    so two systems on one machine never read each other's. The file is emptied
    whenever nothing in it is still open.
    """

    def __init__(self, folder, holder):
        import fcntl
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"{holder}.journal"
        self.file = open(self.path, "a+", buffering=1)
        fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.open = set()  # keys taken and not yet recorded or given back

    def _line(self, **fields):
        self.file.write(json.dumps(fields, default=str) + "\n")

    def take(self, send_key):
        self.open.add(send_key)
        self._line(k=send_key, e="take")

    def data(self, send_key):
        self._line(k=send_key, e="data")

    def outcome(self, entry):
        self.open.add(entry["_id"])
        self._line(k=entry["_id"], e="outcome", o={**entry, "at": entry["at"].isoformat()})

    def release(self, send_key):
        self._line(k=send_key, e="release")
        self.settled([send_key])

    def settled(self, send_keys):
        """These keys are in the database (or given back): the file needs them no more."""
        self.open.difference_update(send_keys)
        if not self.open:
            self.file.truncate(0)

    def close(self, remove=True):
        self.file.close()
        if remove:
            self.path.unlink(missing_ok=True)


def journal_folder(config_uri, database_name, base=None):
    digest = hashlib.sha256(f"{config_uri} {database_name}".encode()).hexdigest()[:16]
    return Path(base or tempfile.gettempdir()) / f"eventpost-mailer-{digest}"


def recover(db, folder, interrupted_reason, wait_seconds=5.0):
    """Settle what mailer processes that died left in their journals; how many keys.
    A journal another process is settling right now (``.settling``) is waited for, up
    to ``wait_seconds``: its keys are about to be decided."""
    import fcntl
    count = 0
    folder = Path(folder)
    for path in sorted(folder.glob("*.journal")):
        try:
            with open(path, "r+") as file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # its process is alive
                settling = path.with_suffix(".settling")
                os.replace(path, settling)  # others wait for it instead of skipping it
                count += _settle(db, path.stem, file, interrupted_reason)
            settling.unlink(missing_ok=True)
        except FileNotFoundError:
            continue  # another process took it first
    deadline = time.monotonic() + wait_seconds
    while any(folder.glob("*.settling")) and time.monotonic() < deadline:
        eventlet.sleep(0.05)
    if count:
        log.warning("settled %d send keys left by mailer processes that died", count)
    return count


def _settle(db, holder, lines, interrupted_reason):
    state = {}
    for line in lines:
        try:
            entry = json.loads(line)
            key, event = entry["k"], entry["e"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
        if event == "outcome":
            outcome = dict(entry["o"])
            outcome["at"] = datetime.fromisoformat(outcome["at"])
            state[key] = outcome
        elif event == "data":
            if state.get(key) in (None, "take"):
                state[key] = "data"
        elif event == "take":
            state.setdefault(key, "take")
        elif event == "release":
            state[key] = "release"
    outcomes = [value for value in state.values() if isinstance(value, dict)]
    # killed inside DATA: the server may have it; never sent again
    outcomes += [{"_id": key, "status": "failed", "at": datetime.now(timezone.utc),
                  "reason": interrupted_reason, "notification_id": None, "kind": None}
                 for key, value in state.items() if value == "data"]
    record(db, outcomes)
    never_sent = [key for key, value in state.items() if value == "take"]
    for key in never_sent:  # taken, never handed over: free for the next attempt
        db[SENDS].delete_one({"_id": key, "holder": holder, "withdrawn": {"$ne": True}})
    return len(outcomes) + len(never_sent)
