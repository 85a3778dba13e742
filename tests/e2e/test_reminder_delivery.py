"""API.md: "No reminder email is ever sent twice, even when a service or the broker
restarts", and issue 4's e2e runs:

- reminders due in the same second, with the shared system's two
  ``notifications`` and two ``mailer`` instances: exactly one email each, each send
  key once (20 in the default run, 200 in the slow layer);
- SIGKILL of the ``notifications`` and ``mailer`` processes between scheduling and
  the due time, then a restart: every reminder is still delivered exactly once.
  This one runs a PRIVATE System (its own var dir, ports, vhost and database), so
  it never kills a process of the session's shared system.

Emails are counted by their ``X-EventPost-Send-Key`` header, as the mail sink
received them.
"""
import os
import signal
import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import BaseUrlSession, running_system
from tests.e2e.helpers import login
from tests.e2e.reminders_support import (
    MailReader,
    Person,
    arrival,
    create_event,
    create_reminder,
    list_all,
    notifications_collection,
    send_key,
    stamp,
    utc_now,
    wait_until,
    whole_seconds_from_now,
)
from tools.system import Child, live_group_members

USERS = 4
# The pipeline does ~9 reminders/s on a 2-core machine: 200 take ~25 s; allow far more.
BURST_DELIVERY_SECONDS = 180


def reminder_mails(mails, reminder_ids):
    """{reminder id: [send keys of its emails]} for the mails about ``reminder_ids``."""
    found = {}
    for mail in mails:
        key = send_key(mail) or ""
        parts = key.split(":")
        if len(parts) == 3 and parts[0] == "reminder" and parts[1] in reminder_ids:
            found.setdefault(parts[1], []).append(key)
    return found


def wait_for_every_reminder_mail(reader, reminder_ids, timeout):
    def all_arrived():
        return len(reminder_mails(reader.poll(), reminder_ids)) == len(reminder_ids)

    try:
        wait_until(all_arrived, timeout, "an email for every reminder", interval=0.5)
    except AssertionError:
        got = reminder_mails(reader.mails, reminder_ids)
        missing = sorted(set(reminder_ids) - set(got))[:10]
        raise AssertionError(f"{len(got)} of {len(reminder_ids)} reminders mailed within "
                             f"{timeout}s; missing: {missing}") from None


def wait_all_sent(http, people, reminder_ids, timeout):
    def sent():
        ids = set()
        for person in people:
            ids |= {n["id"] for n in list_all(http, person.headers, status="sent")}
        return ids >= set(reminder_ids)

    wait_until(sent, timeout, "every reminder is sent", interval=0.5)


def assert_exactly_once(reader, reminder_ids):
    mails = reader.poll()
    by_reminder = reminder_mails(mails, reminder_ids)
    keys = Counter(key for keys in by_reminder.values() for key in keys)
    duplicated = {key: n for key, n in keys.items() if n > 1}
    twice = {rid: keys for rid, keys in by_reminder.items() if len(keys) > 1}
    lost = sorted(set(reminder_ids) - set(by_reminder))
    assert not duplicated, f"send keys mailed more than once: {duplicated}"
    assert not twice, f"reminders mailed more than once (under several keys): {twice}"
    assert not lost, f"reminders never mailed: {lost}"
    assert sum(keys.values()) == len(reminder_ids)


def delays_report(reader, remind_at):
    delays = sorted(arrival(m) - remind_at.timestamp() for m in reader.mails)
    if not delays:
        return "no mail"
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return (f"{len(delays)} mails, delay after remind_at: p50 {statistics.median(delays):.2f}s "
            f"p99 {p99:.2f}s max {delays[-1]:.2f}s")


def create_many(base_url, jobs, workers=8):
    """POST /notifications for each (headers, body), a few at a time."""
    def create(job):
        headers, body = job
        with BaseUrlSession(base_url) as session:
            response = session.post("/notifications", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(create, jobs))


@pytest.mark.timeout(480)
@pytest.mark.parametrize("burst", [20, pytest.param(200, marks=pytest.mark.slow)])
def test_reminders_due_in_the_same_second_make_exactly_one_email_each(http, system,
                                                                     admin_headers, burst):
    event = create_event(http, admin_headers)
    people = [Person(http) for _ in range(USERS)]
    # far enough ahead that every reminder is created before any is due (200: ~20 s
    # on a busy 2-core machine)
    remind_at = whole_seconds_from_now(max(10, burst * 3 // 10))
    jobs = [(people[i % USERS].headers,
             {"event_id": event["id"], "remind_at": stamp(remind_at), "message": f"#{i}"})
            for i in range(burst)]
    reader = MailReader(system.system.mail_files, after=system.mark())
    created = create_many(system.base_url, jobs)
    assert utc_now() < remind_at, "creating the reminders took longer than their lead time"
    reminder_ids = [n["id"] for n in created]
    assert len(set(reminder_ids)) == burst
    assert all(n["remind_at"] == stamp(remind_at) for n in created)
    assert reminder_mails(reader.poll(), reminder_ids) == {}  # none before its time

    wait_until(lambda: utc_now() >= remind_at, 90, "the due time")
    wait_for_every_reminder_mail(reader, reminder_ids, BURST_DELIVERY_SECONDS)
    print(f"\n{burst} reminders, 2+2 instances: {delays_report(reader, remind_at)}")
    wait_all_sent(http, people, reminder_ids, 60)
    assert_exactly_once(reader, reminder_ids)
    # each user got their own share, at their own address
    for person in people:
        theirs = [m for m in reader.mails if event["title"] in m.subject
                  and m.rcpt_to == [person.email]]
        assert len(theirs) == burst // USERS
    assert len([m for m in reader.mails if event["title"] in m.subject]) == burst


# --- kill and restart, in a private system ------------------------------------------


@pytest.fixture
def private_system(request, tmp_path, rabbit_manager):
    """The whole system as `invoke run` starts it, like conftest's ``system`` but our
    own, so its service processes can be killed."""
    # MONGO_URI "": the embedded server, in tmp_path
    with running_system(request, rabbit_manager, tmp_path / "var", name="e2e_kill",
                        label="private system", mongo_uri="") as running:
        yield running


def sigkill(launcher, names):
    """SIGKILL the process groups of the named services and wait until they are gone."""
    victims = [c for c in launcher.children if c.name in names]
    assert sorted(c.name for c in victims) == sorted(names), launcher.children
    for child in victims:
        assert child.running, f"{child.name} was not running"
        os.killpg(child.process.pid, signal.SIGKILL)
    for child in victims:
        child.process.wait(timeout=10)
        assert child.process.returncode == -signal.SIGKILL
        pgid = child.process.pid
        wait_until(lambda pgid=pgid: not live_group_members(pgid), 10,
                   f"every process of {child.name} is gone")
    return victims


def restart(launcher, victims):
    """Start the killed services again exactly as System started them (same argv,
    environment and log file; own process group), replacing them in its children so
    ``stop()`` stops the new ones."""
    for old in victims:
        launcher.children.remove(old)
        launcher._spawn(Child(old.name, old.argv, old.log_path), launcher.child_env)


def wait_healthy(base_url, names, timeout=90):
    last = {}

    def healthy():
        with BaseUrlSession(base_url) as session:
            try:
                last["answer"] = session.get("/health", timeout=5).json()
            except Exception as exc:
                last["answer"] = type(exc).__name__
                return False
        services = last["answer"].get("services", {})
        return all(services.get(name) == "ok" for name in names)

    try:
        wait_until(healthy, timeout, f"{names} healthy again", interval=0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}; last /health: {last.get('answer')}") from None


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("restart_when", ["before-due", "after-due"])
def test_sigkill_before_the_due_time_and_restart_still_delivers_each_reminder_once(
        private_system, restart_when):
    """SIGKILL before the due time; start again at once ("before-due"), or only once
    the reminders are overdue ("after-due": they go out on restart, within the
    catch-up window)."""
    count = 20
    system = private_system
    launcher = system.system
    with BaseUrlSession(system.base_url) as http:
        user, password = system.create_admin()
        admin_headers = login(http, {"username": user["username"], "password": password})
        event = create_event(http, admin_headers)
        person = Person(http)
        reader = MailReader(launcher.mail_files, after=system.mark())
        remind_at = whole_seconds_from_now(15)
        reminders = [create_reminder(http, person.headers, event["id"],
                                     remind_at=stamp(remind_at), message=f"#{i}")
                     for i in range(count)]
        reminder_ids = [n["id"] for n in reminders]
        assert utc_now() < remind_at

        victims = sigkill(launcher, ["notifications", "mailer"])
        killed_at = utc_now()
        assert killed_at < remind_at, "the kill came after the due time: not this test"
        assert reminder_mails(reader.poll(), reminder_ids) == {}
        # the service is down: its database shows that nothing was claimed yet
        client, stored = notifications_collection(system)
        try:
            statuses = Counter(n["status"] for n in stored.find({"_id": {"$in": reminder_ids}}))
        finally:
            client.close()
        assert statuses == {"scheduled": count}, statuses

        if restart_when == "after-due":
            wait_until(lambda: utc_now().timestamp() >= remind_at.timestamp() + 3, 60,
                       "the reminders are overdue")
        restart(launcher, victims)
        wait_healthy(system.base_url, ["notifications", "mailer"])
        print(f"\nkilled {(remind_at - killed_at).total_seconds():.1f}s before the due "
              f"time; healthy again {(utc_now() - remind_at).total_seconds():+.1f}s "
              f"from it")

        wait_for_every_reminder_mail(reader, reminder_ids, 90)
        print(f"kill/restart: {delays_report(reader, remind_at)}")
        wait_all_sent(http, [person], reminder_ids, 60)
        # every reminder is sent, so none is handed over again: a duplicate could only
        # come from a copy in flight, which the services have handled once they are idle
        system.wait_until_idle()
        assert_exactly_once(reader, reminder_ids)
        for reminder in list_all(http, person.headers):
            assert reminder["status"] == "sent" and reminder["sent_at"], reminder
            assert reminder["failure_reason"] is None
