"""API.md v1.1, "One-click links in emails": the links in a real reminder email, as the
SMTP server received it, followed over HTTP."""
import re
from datetime import timedelta
from urllib.parse import urlsplit

from bus import links
from tests.e2e.helpers import assert_error, login, new_account
from tests.e2e.reminders_support import (
    Person,
    create_event,
    create_reminder,
    get_reminder,
    no_more_mail,
    stamp,
    utc_now,
    wait_until,
    whole_seconds_from_now,
)

JSON = {"Accept": "application/json"}


def reminder_links(mail):
    """{label: path} of the links in the email's plain-text body."""
    found = dict(re.findall(r"^(Snooze 1 hour|Snooze 1 day|Cancel this reminder): (\S+)\r?$",
                            mail.text, flags=re.M))
    return {label: urlsplit(url).path for label, url in found.items()}


def test_snooze_and_cancel_from_the_email(http, system, admin_headers):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    headers = login(http, account)
    event = create_event(http, admin_headers)
    mark = system.mark()
    reminder = create_reminder(http, headers, event["id"],
                               remind_at=stamp(whole_seconds_from_now(1)))
    [mail] = system.wait_for_mail(to=account["email"], subject="Reminder", after=mark)
    found = reminder_links(mail)
    assert set(found) == {"Snooze 1 hour", "Snooze 1 day", "Cancel this reminder"}
    assert all(path.startswith("/links/") for path in found.values())
    # RFC 8058: the unsubscribe header is the cancel link, and it says one click works
    assert urlsplit(mail.message["List-Unsubscribe"].strip().strip("<>")).path == \
        found["Cancel this reminder"]
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    wait_until(lambda: http.get(f"/notifications/{reminder['id']}", headers=headers)
               .json()["status"] == "sent", 10, "the reminder sent")

    # a GET (a mail scanner, a preview) only shows the page: nothing changes
    page = http.get(found["Snooze 1 hour"])
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "Snooze this reminder for 1 hour" in page.text and '<form method="post"' in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert http.get(f"/notifications/{reminder['id']}", headers=headers).json()["status"] \
        == "sent"

    before = utc_now()
    snoozed = http.post(found["Snooze 1 hour"], headers=JSON)
    assert snoozed.status_code == 200, snoozed.text
    body = snoozed.json()
    assert body["done"] is True and body["notification"]["status"] == "scheduled"
    due = body["notification"]["remind_at"]
    assert before + timedelta(minutes=59) < parse(due) < utc_now() + timedelta(minutes=61)
    # the same link again: nothing more happens, and the answer says so
    again = http.post(found["Snooze 1 hour"], headers=JSON)
    assert again.status_code == 200 and again.json()["done"] is False
    assert "used already" in again.json()["message"]
    assert again.json()["notification"]["remind_at"] == due
    # a link of the same email that was not used: done, since nothing was sent after
    day = http.post(found["Snooze 1 day"], headers=JSON).json()
    assert day["done"] is False  # the 1-hour snooze re-armed it: this email's arm is past

    # one-click unsubscribe, as a mail client sends it: cancels the reminder (HTML answer)
    cancelled = http.post(found["Cancel this reminder"], data="List-Unsubscribe=One-Click",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert cancelled.status_code == 200 and "Cancelled" in cancelled.text
    assert http.get(f"/notifications/{reminder['id']}", headers=headers).json()["status"] \
        == "cancelled"
    assert http.post(found["Cancel this reminder"], headers=JSON).json()["done"] is False


def test_altered_unknown_and_expired_links(http, system):
    secret = system.env["JWT_SECRET"]
    now = utc_now()
    token = links.sign(secret, "cancel", "nobody", "nothing", now, arm=1)
    altered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for path in (f"/links/{altered}", "/links/not-a-token", "/links/" + "x" * 2000):
        assert_error(http.get(path), 404, "not_found")
        assert_error(http.post(path, headers=JSON), 404, "not_found")
    # signed by us, but for a reminder that does not exist: no hint, a 404
    assert_error(http.post(f"/links/{token}", headers=JSON), 404, "not_found")
    expired = links.sign(secret, "cancel", "nobody", "nothing", now - timedelta(days=31), arm=1)
    assert_error(http.get(f"/links/{expired}"), 410, "gone")
    assert_error(http.post(f"/links/{expired}"), 410, "gone")
    # another secret's token, or an access token, is not a link
    assert_error(http.get(f"/links/{links.sign('x' * 40, 'cancel', 'a', 'b', now)}"), 404,
                 "not_found")


def test_a_cancellation_notice_stops_the_next_ones_and_email_preferences_bring_them_back(
        http, system, admin_headers):
    ann, bob = Person(http), Person(http)

    def cancelled_event():
        """An event both have a reminder for, deleted; and Ann's reminder."""
        event = create_event(http, admin_headers)
        anns = create_reminder(http, ann.headers, event["id"])
        create_reminder(http, bob.headers, event["id"])
        assert http.delete(f"/events/{event['id']}", headers=admin_headers).status_code == 204
        return event, anns

    def preferences():
        response = http.get("/users/me/email-preferences", headers=ann.headers)
        assert response.status_code == 200, response.text
        return response.json()

    mark = system.mark()
    first, _ = cancelled_event()
    [notice] = system.wait_for_mail(to=ann.email, subject=first["title"], after=mark,
                                    timeout=20)
    [url] = re.findall(r"^Stop emails about cancelled events: (\S+)\r?$", notice.text,
                       flags=re.M)
    path = urlsplit(url).path
    assert path.startswith("/links/")
    assert urlsplit(notice.message["List-Unsubscribe"].strip().strip("<>")).path == path
    assert notice.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert preferences() == {"cancellation_notices": True}

    page = http.get(path)  # a mail scanner: only the page, nothing changes
    assert page.status_code == 200 and '<form method="post"' in page.text
    assert "Stop emails about cancelled events" in page.text
    assert preferences() == {"cancellation_notices": True}
    stopped = http.post(path, headers=JSON)
    assert stopped.status_code == 200 and stopped.json()["done"] is True, stopped.text
    again = http.post(path, headers=JSON).json()
    assert again["done"] is False and "already" in again["message"]
    assert "already" in http.get(path).text
    assert preferences() == {"cancellation_notices": False}

    # the next cancellation: Bob's notice arrives, so Ann's would have by then; none did
    mark = system.mark()
    second, anns = cancelled_event()
    system.wait_for_mail(to=bob.email, subject=second["title"], after=mark, timeout=20)
    no_more_mail(system, 0, to=ann.email, subject=second["title"], after=mark)
    assert get_reminder(http, ann.headers, anns["id"])["status"] == "cancelled"

    for body, field in (({"cancellation_notices": "yes"}, "cancellation_notices"),
                        ({"cancellation_notices": 1}, "cancellation_notices"),
                        ({"other": True}, "other")):
        assert_error(http.patch("/users/me/email-preferences", json=body, headers=ann.headers),
                     422, "validation_error", [field])
    back = http.patch("/users/me/email-preferences", json={"cancellation_notices": True},
                      headers=ann.headers)
    assert back.status_code == 200 and back.json() == {"cancellation_notices": True}
    mark = system.mark()
    third, _ = cancelled_event()
    system.wait_for_mail(to=ann.email, subject=third["title"], after=mark, timeout=20)


def parse(text):
    from bus import times
    return times.parse(text)
