"""``Post``: what the mailer's workers share in one process (a ``Postman``), as a
Nameko dependency.

A small pool of kept-open SMTP connections (smtp.Pool), the grouped writes of the
sent log (storage.GroupWriter: the hand-over marks and the outcomes), and the
publishing of ``delivery_report``s. handlers.py decides; this carries it out.
Configuration: SMTP_HOST, SMTP_PORT, SMTP_TIMEOUT, SMTP_POOL_SIZE (connections per
process, default 8), MAIL_FROM, MAILER_LEASE_SECONDS.
"""
import logging
import uuid

import eventlet
from eventlet.event import Event
from nameko.extensions import DependencyProvider

from bus.announce import Announcer
from bus.config import setting
from bus.messages import new_message, utc_now
from bus.mongo import Mongo

from . import handlers, smtp, storage

log = logging.getLogger(__name__)
REPORT_ITEMS = 200  # outcomes per delivery_report message
REPORT_LINGER_SECONDS = 0.5
OUTCOME_LINGER_SECONDS = 0.05


class Post(DependencyProvider):
    """Gives every worker the process's one ``Postman``."""

    def setup(self):
        config = self.container.config
        self.settings = dict(
            host=setting(config, "SMTP_HOST", "127.0.0.1"),  # unset: the local sink
            port=int(setting(config, "SMTP_PORT", 1025)),
            timeout=float(setting(config, "SMTP_TIMEOUT", 10)),
            size=int(setting(config, "SMTP_POOL_SIZE", 8)),
        )
        self.sender = setting(config, "MAIL_FROM", smtp.DEFAULT_SENDER)
        self.lease_seconds = float(setting(config, "MAILER_LEASE_SECONDS", 30))
        database = f"{setting(config, 'MONGO_DATABASE_PREFIX', '')}{self.container.service_name}"
        self.journals = storage.journal_folder(setting(config, "MONGO_URI"), database,
                                               setting(config, "MAILER_JOURNAL_DIR"))
        self.postman = None
        self._started = Event()

    def start(self):
        deps = self.container.dependencies
        db = next(d for d in deps if isinstance(d, Mongo)).database
        announcer = next(d for d in deps if isinstance(d, Announcer))
        self.postman = Postman(db, announcer.publish, smtp.Pool(**self.settings),
                               self.sender, self.lease_seconds, journals=self.journals)
        self._started.send()

    def stop(self):
        if self.postman is not None:
            self.postman.stop()

    kill = stop

    def get_dependency(self, worker_ctx):
        # nameko starts entrypoints and dependencies side by side: a message may come
        # in while start() still settles what a dead process left (Postman)
        self._started.wait()
        return self.postman


class Postman:
    """The SMTP pool, the grouped writes and the reports of one mailer process."""

    def __init__(self, db, publish, pool, sender=smtp.DEFAULT_SENDER, lease_seconds=30.0,
                 holder=None, journals=None):
        self.db, self.publish, self.pool = db, publish, pool
        self.sender, self.lease_seconds = sender, float(lease_seconds)
        self.parallel = getattr(pool, "size", 4)
        # this process, in the marks it writes (handlers.someone_elses)
        self.holder = holder or uuid.uuid4().hex[:12]
        self._holding = set()
        self._stopped = False
        self.journals = journals
        self.journal = None
        if journals is not None:
            try:
                self.journal = storage.Journal(journals, self.holder)
            except OSError:  # without it a crash only costs more "interrupted" keys
                log.exception("no journal in %s", journals)
            self.recover()
        self._marks = storage.GroupWriter(self._write_marks, "hand-over marks")
        # nobody waits on an outcome but the message's acknowledgement (the journal
        # has it at once), so outcomes wait a moment for more to share their write
        self._outcomes = storage.GroupWriter(self._write_outcomes, "outcomes",
                                             linger=OUTCOME_LINGER_SECONDS)
        # a report is one update per kind of outcome in the notifications service:
        # a few large ones cost its database far less than many small ones
        self._reports = storage.GroupWriter(self._publish, "delivery reports",
                                            linger=REPORT_LINGER_SECONDS)

    def drain(self):
        """Wait until every outcome so far is recorded and reported."""
        self._outcomes.drain()
        self._reports.drain()

    def stop(self):
        self._outcomes.drain(timeout=5)
        self._reports.drain(timeout=3)  # what is recorded, report now; else the lease will
        self._stopped = True
        self._marks.stop()
        self._outcomes.stop()
        self._reports.stop()
        if self.journal is not None:  # kept if something is still only in it
            self.journal.close(remove=not self.journal.open)
        self.pool.close()

    # what handlers.py uses

    @staticmethod
    def now():
        return utc_now()

    def send(self, email, committing):
        return self.pool.send(email, committing)

    def take(self, mail):
        """Insert the key's hand-over mark (grouped with concurrent ones); True if it is
        ours to send."""
        return self._marks.submit(mail).wait()

    def holds(self, send_key):
        return send_key in self._holding

    def release(self, send_key):
        try:
            storage.release(self.db, send_key, self.holder)
            if self.journal is not None:
                self.journal.release(send_key)
        except Exception:  # noqa: BLE001  the mark stays: the key ends "interrupted" later
            log.exception("could not give send key %s back", send_key)
        self._holding.discard(send_key)

    def handing_over(self, send_key):
        """Right before DATA: from now on the server may have it."""
        if self.journal is not None:
            self.journal.data(send_key)

    def mark(self, send_key):
        return storage.find_marks(self.db, [send_key]).get(send_key)

    def known_outcomes(self, send_keys):
        return storage.find_outcomes(self.db, send_keys)

    def recover(self):
        """Outcomes that dead mailer processes of this machine had only in their journals."""
        if self.journals is not None:
            try:
                storage.recover(self.db, self.journals, handlers.INTERRUPTED)
            except Exception:  # noqa: BLE001  the files stay for the next try
                log.exception("could not recover the journals in %s", self.journals)

    def record(self, entry, recorded=False):
        """Record ``entry`` (unless ``recorded``) and report it; returns a callable that
        waits until it is recorded and returns the outcome as stored. A final outcome
        goes to the journal first, at once (storage.Journal)."""
        if self.journal is not None and not recorded and entry["status"] in ("sent", "failed"):
            self.journal.outcome(_stored(entry))
        done = self._outcomes.submit((entry, recorded))
        return done.wait

    def report(self, entries):
        for entry in entries:
            self._outcomes.submit((entry, True))

    # the grouped writes

    def _write_marks(self, mails):
        now = utc_now()
        if self.journal is not None:
            for mail in mails:
                self.journal.take(mail.send_key)
        marks = {}
        for mail in mails:  # the same key twice in one group: one mark, the first wins
            marks.setdefault(mail.send_key, {
                "_id": mail.send_key, "kind": mail.kind, "notification_id": mail.notification_id,
                "holder": self.holder, "at": now})
        taken = storage.take(self.db, list(marks.values()))
        if self.journal is not None and taken:
            self.journal.settled(taken)  # someone else's: nothing of ours to settle later
        results, seen = [], set()
        for mail in mails:
            mine = mail.send_key not in taken and mail.send_key not in seen
            if mine:  # before anyone hears the answer (handlers.someone_elses asks)
                self._holding.add(mail.send_key)
            results.append(mine)
            seen.add(mail.send_key)
        return results

    def _write_outcomes(self, items):
        new = [entry for entry, recorded in items
               if not recorded and entry["status"] in ("sent", "failed")]
        stored = storage.retrying(
            lambda: storage.record(self.db, [_stored(e) for e in new]),
            "recording outcomes", stopped=lambda: self._stopped) if new else {}
        final = [stored.get(entry["_id"], entry) for entry, _ in items]
        if self.journal is not None:
            self.journal.settled(entry["_id"] for entry, _ in items)
        for entry in final:
            self._holding.discard(entry["_id"])
        # reported by another greenthread, so the next outcomes are recorded meanwhile:
        # a mail sent but not yet recorded is one a crash turns into "interrupted"
        for entry in final:
            self._reports.submit(handlers.report_item(entry))
        return final

    def _publish(self, outcomes):
        for start in range(0, len(outcomes), REPORT_ITEMS):
            message = new_message("mailer", "delivery_report", "mailer", 1,
                                  outcomes=outcomes[start:start + REPORT_ITEMS])
            pause = 0.5
            for attempt in range(6):  # rides out a broker restart; else the lease covers it
                try:
                    self.publish(message)
                    break
                except Exception as error:  # noqa: BLE001
                    log.warning("publishing a delivery report failed (%s), attempt %d",
                                error, attempt + 1)
                    eventlet.sleep(pause)
                    pause = min(5.0, pause * 2)
            else:
                log.error("gave up publishing a delivery report of %d outcomes; the "
                          "notifications service will hand them over again", len(outcomes))
        return [None] * len(outcomes)


def _stored(entry):
    return {key: entry[key] for key in ("_id", "status", "at", "reason", "notification_id",
                                        "kind")}
