"""The mailer's once-per-send-key on a real SecantusDB database: copies of one mail
racing through their round trips to the server (SMTP a recording stand-in, as in
tests/unit/mailer/test_deliver.py)."""
import eventlet
import pytest

from tests.unit.mailer.test_deliver import Reports, Server, deliver, postman

pytestmark = pytest.mark.integration


@pytest.fixture
def db(new_database):
    return new_database("mailer")


def test_two_copies_at_once_send_one_mail(db):
    reports = Reports()
    server = Server(delay=0.1)
    post = postman(db, server, reports)
    other = postman(db, server, reports, holder="other instance")
    pool = eventlet.GreenPool()
    results = [r for [r] in pool.imap(lambda p: deliver(p), [post, other, post, post])]
    assert len(server.accepted) == 1
    # the holder reports it; a copy leaves it to the holder, and none is put off
    assert "sent" in results and set(results) <= {"sent", None}, results
