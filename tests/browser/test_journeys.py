"""What people do with the web app, in Chromium, against the whole running system."""
import uuid
from datetime import datetime, timedelta, timezone

from tests.browser.helpers import create_event, new_account

BERLIN = (52.52, 13.405)
PARIS = (48.8566, 2.3522)

# the browser's local wall-clock time `seconds` from now, as a datetime-local value
LOCAL_WALL_SOON = """
const d = new Date(Date.now() + arguments[0] * 1000);
const pad = (n) => String(n).padStart(2, "0");
return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
       `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
"""


# ms from asking discover for the topic until the event is in its list (null: not in 5 s)
SHOWN_IN_DISCOVER = """
const [topic, title, done] = arguments;
const started = performance.now();
location.hash = `#/?topic=${encodeURIComponent(topic)}`;
const check = () => {
  const list = document.querySelector('.event-list');
  if (list && list.textContent.includes(title)) return done(performance.now() - started);
  if (performance.now() - started > 5000) return done(null);
  setTimeout(check, 10);
};
check();
"""


def _soon(hours):
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()


def test_sign_up_find_an_event_near_a_point_get_its_reminder_and_snooze_it(
        browser, system, http, admin_headers):
    topic = f"jazz{uuid.uuid4().hex[:6]}"
    near = create_event(http, admin_headers, title=f"Jazz by the river {topic}", topics=[topic],
                        starts_at=_soon(30), timezone="Europe/Berlin",
                        place={"name": "Spreeufer", "lat": BERLIN[0], "lng": BERLIN[1]})
    far = create_event(http, admin_headers, title=f"Jazz in Paris {topic}", topics=[topic],
                       starts_at=_soon(28),
                       place={"name": "Seine", "lat": PARIS[0], "lng": PARIS[1]})
    account = new_account()

    # sign up
    browser.open("/signup")
    browser.fill("username", account["username"])
    browser.fill("email", account["email"])
    browser.fill("password", account["password"])
    browser.click_button("Create account")
    browser.wait_for_text("#nav", "Sign out")
    browser.wait_for_text("#flash", f"Welcome, {account['username']}")

    # find it by topic near a point
    browser.wait_for("form.filters")
    browser.fill("topic", topic)
    browser.fill("near", f"{BERLIN[0]},{BERLIN[1] + 0.01}")
    browser.fill("radius_km", "25")
    browser.click_button("Search")
    browser.wait_for_text(".event-list", near["title"])
    browser.wait_until(lambda: far["title"] not in browser.find(".event-list").text,
                       message="the Paris event is 900 km away")
    assert "km away" in browser.find(".event-list").text
    assert len(browser.find_all(".discover-map path.leaflet-interactive")) == 1  # its marker

    # its page: both time zones, then a reminder a few seconds from now
    browser.wait_for_text(".event-list a", near["title"]).click()
    browser.wait_for_text("#main h1", near["title"])
    details = browser.find(".details").text
    assert "(Europe/Berlin)" in details
    browser.select("when", "at")
    browser.set_value("remind_at", browser.driver.execute_script(LOCAL_WALL_SOON, 3))
    assert browser.control("email").get_attribute("value") == account["email"]
    mark = system.mark()
    browser.click_button("Remind me")
    browser.wait_for_text("#flash", "Reminder set")

    # it arrives at the SMTP server
    mail = system.wait_for_mail(to=account["email"], subject=near["title"], after=mark,
                                timeout=20)[0]
    assert "Spreeufer" in mail.text

    # my reminders: sent, then snoozed for an hour
    browser.go("/reminders")
    browser.wait_for_text(".reminder h2", near["title"])

    def shows_sent():
        if "sent" not in browser.find(".reminder .badge").text:
            # the mailer's report may still be on its way: load the page again, as a
            # user would (choosing the filter it already has changes nothing)
            browser.driver.refresh()
            browser.wait_for(".reminder .badge")
            return False
        return True
    browser.wait_until(shows_sent, timeout=10, message="the reminder shows as sent")
    assert browser.find(".reminder").get_attribute("data-status") == "sent"
    browser.select("minutes", "60", within=".reminder")
    browser.click_button("Snooze", within=".reminder")
    browser.wait_for_text("#flash", "Snoozed")
    browser.wait_until(
        lambda: browser.find(".reminder").get_attribute("data-status") == "scheduled",
        message="the snoozed reminder is scheduled again")
    reminder = http.get("/notifications", headers=_token_of(http, account)).json()["items"][0]
    remind_at = datetime.fromisoformat(reminder["remind_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=55) < remind_at - datetime.now(timezone.utc) < timedelta(minutes=61)


def _token_of(http, account):
    answer = http.post("/auth/token", json={"username": account["username"],
                                            "password": account["password"]})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_an_admin_creates_an_event_and_it_is_in_discover_within_a_second(browser, admin):
    topic = f"pottery{uuid.uuid4().hex[:6]}"
    title = f"Pottery evening {topic}"
    browser.sign_in(admin)
    browser.go("/admin/new")
    browser.fill("title", title)
    browser.fill("description", "Clay, wheels & tea.\nBring an apron.")
    browser.fill("topics", f"{topic}, crafts")
    browser.fill("timezone", "Europe/Paris")
    browser.set_value("starts_at", (datetime.now() + timedelta(days=3)).strftime("%Y-%m-%dT19:30"))
    browser.fill("place_name", "Atelier")
    browser.fill("place_lat", str(PARIS[0]))
    browser.fill("place_lng", str(PARIS[1]))
    browser.click_button("Create event")
    browser.wait_for_text("#main h1", title)
    assert "07:30 PM GMT+1 (Europe/Paris)" in browser.find(".details").text  # its own zone
    # timed in the page, so the driver's own round trips (slow on a busy machine) do not count
    shown_after = browser.driver.execute_async_script(SHOWN_IN_DISCOVER, topic, title)
    assert shown_after is not None and shown_after < 1000, shown_after
    browser.wait_for_text(".event-list", title)

    # edit, cancel and delete it
    browser.wait_for_text(".event-list a", title).click()
    browser.wait_for_text("#main a", "Edit event").click()
    browser.wait_for_text("#main h1", "Edit:")
    browser.fill("title", title + " (moved)")
    browser.click_button("Save changes")
    browser.wait_for_text("#main h1", title + " (moved)")
    browser.wait_for_text("#main a", "Edit event").click()
    browser.click_button("Cancel event")
    browser.click_button("Yes, cancel it")
    browser.wait_for_text("#main .badge", "Cancelled")
    browser.wait_for_text("#main a", "Edit event").click()
    browser.click_button("Delete event")
    browser.click_button("Yes, delete it")
    browser.wait_for_text("#flash", "Event deleted")


def test_an_admin_creates_a_weekly_series_and_its_page_links_its_occurrences(browser, admin):
    title = f"Sketch club {uuid.uuid4().hex[:6]}"
    browser.sign_in(admin)
    browser.go("/admin/new")
    browser.fill("title", title)
    browser.fill("topics", "drawing")
    browser.fill("timezone", "UTC")
    browser.set_value("starts_at", (datetime.now() + timedelta(days=2)).strftime("%Y-%m-%dT18:00"))
    assert not browser.control("count").is_displayed()  # until it repeats
    browser.select("repeats", "WEEKLY")
    browser.fill("count", "501")
    browser.click_button("Create event")
    browser.wait_until(lambda: browser.error_beside("repeats"), message="recurrence error")
    assert "500" in browser.error_beside("repeats")
    browser.fill("count", "3")
    browser.click_button("Create event")
    browser.wait_for_text("#main h1", title)
    browser.wait_for_text("#main .series a", "all its occurrences").click()
    browser.wait_for_text("#main h1", "Occurrences of a series")
    browser.wait_until(lambda: len([a for a in browser.find_all(".event-list a")
                                    if title in a.text]) == 3, message="three occurrences")
    assert all(title in a.text for a in browser.find_all(".event-list a"))
    series_page = "/" + browser.driver.current_url.split("#/", 1)[1]

    # from an occurrence's editor, the whole series goes
    browser.wait_for_text(".event-list a", title).click()
    browser.wait_for_text("#main a", "Edit event").click()
    browser.click_button("Delete the series")
    browser.click_button("Yes, delete its upcoming occurrences")
    browser.wait_for_text("#flash", "Series deleted")
    browser.go(series_page)
    browser.wait_for_text("#main .result-status", "No upcoming events match")


def test_an_admin_renames_and_moves_a_whole_series_from_one_occurrences_editor(
        browser, http, admin, admin_headers):
    title = f"Reading circle {uuid.uuid4().hex[:6]}"
    day = (datetime.now(timezone.utc) + timedelta(days=2)).strftime("%Y-%m-%d")
    first = create_event(http, admin_headers, title=title, topics=["books"],
                         timezone="Europe/Madrid", starts_at=f"{day}T18:00:00+01:00",
                         recurrence="FREQ=WEEKLY;COUNT=3")

    def occurrences():
        found = http.get("/events", params={"series_id": first["id"]}).json()["items"]
        return sorted(found, key=lambda e: e["starts_at"])

    before = occurrences()
    assert len(before) == 3
    browser.sign_in(admin)
    # the second occurrence's editor: its move is the series' next one's
    browser.go(f"/events/{before[1]['id']}/edit")
    browser.wait_for_text("#main h1", "Edit:")
    browser.click_button("Save for the whole series")
    browser.wait_for_text("#flash", "Nothing to save")
    starts = browser.control("starts_at").get_attribute("value")
    assert starts.endswith("T18:00")  # in the event's own zone
    browser.set_value("starts_at", "")
    browser.click_button("Save for the whole series")
    browser.wait_until(lambda: browser.error_beside("starts_at"), message="starts_at error")
    browser.fill("title", f"{title} (upstairs)")
    browser.set_value("starts_at", starts.replace("T18:00", "T19:30"))
    browser.click_button("Save for the whole series")
    browser.wait_for_text("#flash", "Series saved")
    browser.wait_for_text("#main h1", f"{title} (upstairs)")

    browser.go(f"/?series_id={first['id']}")
    browser.wait_until(lambda: len([a for a in browser.find_all(".event-list a")
                                    if f"{title} (upstairs)" in a.text]) == 3,
                       message="every occurrence renamed")
    after = occurrences()
    assert [e["id"] for e in after] == [e["id"] for e in before]
    assert all(e["title"] == f"{title} (upstairs)" for e in after)
    moved = [datetime.fromisoformat(e["starts_at"].replace("Z", "+00:00")) for e in after]
    was = [datetime.fromisoformat(e["starts_at"].replace("Z", "+00:00")) for e in before]
    assert [m - w for m, w in zip(moved, was)] == [timedelta(minutes=90)] * 3


def test_validation_errors_show_beside_their_fields(browser, admin):
    browser.open("/signup")
    browser.fill("username", "No Spaces Allowed")
    browser.fill("email", "not-an-email")
    browser.fill("password", "short")
    browser.click_button("Create account")
    browser.wait_until(lambda: browser.error_beside("password"), message="password error")
    assert browser.error_beside("username")
    assert browser.error_beside("email")
    assert browser.find("#main [name=password]").get_attribute("aria-invalid") == "true"

    browser.sign_in(admin)
    browser.go("/admin/new")
    browser.fill("topics", "x")
    browser.fill("place_name", "Nowhere")
    browser.fill("place_lat", "100")
    browser.fill("place_lng", "2")
    browser.click_button("Create event")
    browser.wait_until(lambda: browser.error_beside("place_lat"), message="latitude error")
    assert "90" in browser.error_beside("place_lat")
    assert browser.error_beside("title")
    assert browser.error_beside("starts_at")
    assert not browser.error_beside("place_lng")
    assert not browser.error_beside("topics")
