"""Every page of the web app: a screenshot at 1280 and 360 px (var/screenshots/), no
console errors, every form control labelled, no page wider than the window, the
Content-Security-Policy on the page, user text shown as text, and the keyboard alone."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from selenium.webdriver.common.keys import Keys

from tests.browser.helpers import create_event, new_account

# controls without a label a screen reader can read, and how far the page overflows
UNLABELLED = """
return [...document.querySelectorAll('#main input, #main select, #main textarea')]
  .filter((c) => c.type !== 'hidden' && c.labels.length === 0 && !c.getAttribute('aria-label'))
  .map((c) => c.name || c.outerHTML.slice(0, 80));
"""
OVERFLOW = "return document.documentElement.scrollWidth - window.innerWidth;"


def _iso(**delta):
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def _check(browser, name):
    """The page as it is now: labelled, not wider than 360 px, pictured at both widths."""
    assert browser.driver.execute_script(UNLABELLED) == [], name
    browser.screenshots(name)
    browser.driver.set_window_size(360, 780)
    assert browser.driver.execute_script(OVERFLOW) <= 0, f"{name} is wider than 360 px"
    browser.driver.set_window_size(1280, 900)
    browser.collect_console(name)


# nine pages, each pictured twice: ~30 s alone, minutes on a machine busy with other runs
@pytest.mark.timeout(360)
def test_every_page(browser, system, http, admin, admin_headers):
    browser.console.clear()
    topic = f"folk{uuid.uuid4().hex[:6]}"
    trap = '<img src=x onerror="window.pwned=1">Folk & "friends"'
    event = create_event(
        http, admin_headers, title=trap, topics=[topic, "music"], starts_at=_iso(days=2),
        timezone="America/New_York", organizer="Folk club",
        description="Line one\n<b>not bold</b>",
        place={"name": "Town hall", "address": "1 Main St", "lat": 40.71, "lng": -74.0})
    for n in range(3):
        create_event(http, admin_headers, title=f"Folk night {n} {topic}", topics=[topic],
                     starts_at=_iso(days=3 + n),
                     place={"name": f"Club {n}", "lat": 40.7 + n / 50, "lng": -74.0 + n / 40})
    response = http.get("/")
    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe" not in policy

    browser.open(f"/?topic={topic}")
    browser.wait_for_text(".event-list", "Folk night 2")
    feed = browser.find("a.feed").get_attribute("href")
    assert f"/events.ics?topic={topic}" in feed
    calendar = http.get(feed)
    assert calendar.headers["Content-Type"].startswith("text/calendar")
    assert calendar.text.count("BEGIN:VEVENT") == 4
    _check(browser, "discover")

    browser.open("/signup")
    _check(browser, "signup")
    browser.open("/signin")
    _check(browser, "signin")

    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    browser.sign_in(account)
    browser.go(f"/events/{event['id']}")
    browser.wait_for("#main .details")
    title = browser.find("#main h1")
    assert title.text == trap  # as text: no image, no handler ran
    assert title.find_elements("css selector", "img") == []
    assert browser.driver.execute_script("return window.pwned") is None
    assert "<b>not bold</b>" in browser.find(".description").text
    assert "(America/New_York)" in browser.find(".details").text
    _check(browser, "event")

    browser.select("when", "1440")
    browser.click_button("Remind me")
    browser.wait_for_text("#flash", "Reminder set")
    browser.go("/reminders")
    browser.wait_for_text(".reminder h2", trap)
    browser.click_button("Edit", within=".reminder")
    browser.wait_for(".edit-reminder")
    _check(browser, "reminders")
    browser.fill("message", "Bring the fiddle.", within=".edit-reminder")
    browser.click_button("Save", within=".edit-reminder")
    browser.wait_for_text("#flash", "Reminder saved")
    browser.wait_for_text(".reminder .note", "Bring the fiddle.")
    browser.click_button("Delete", within=".reminder")
    browser.click_button("Yes, delete it", within=".reminder")
    browser.wait_for_text("#flash", "Reminder deleted")
    browser.wait_for_text("#main", "No reminders yet")

    browser.go("/account")
    secondary = f"second.{account['username']}@example.org"
    browser.fill("email", secondary)
    browser.click_button("Add")
    browser.wait_for_text("#flash", f"{secondary} added")
    browser.wait_for_text(".emails", secondary)
    browser.click_button("Make my calendar feed URL")
    feed_url = browser.control("feed_url").get_attribute("value")
    assert "/calendar/" in feed_url and feed_url.endswith(".ics")
    assert http.get(feed_url).headers["Content-Type"].startswith("text/calendar")
    _check(browser, "account")
    # the email choice: on by default; unticked, the API says off (a cancellation
    # notice's stop link does the same)
    notices = browser.control("cancellation_notices")
    browser.wait_until(lambda: notices.is_enabled() and notices.is_selected(),
                       message="the cancellation-notices box ticked")
    notices.click()
    browser.wait_for_text("#flash", "No more emails about cancelled events")
    assert http.get("/users/me/email-preferences", headers=_bearer(http, account)).json() \
        == {"cancellation_notices": False}
    browser.click_button("Make primary")
    browser.wait_for_text("#flash", "is now your primary email")
    headers = _bearer(http, account)
    assert http.get("/users/me", headers=headers).json()["email"] == secondary
    browser.click_button("Delete my account")
    browser.click_button("Yes, delete my account")
    browser.wait_for_text("#flash", "Your account is deleted")
    assert http.get("/users/me", headers=headers).status_code == 401

    browser.sign_in(admin)
    browser.go("/admin/new")
    _check(browser, "admin-new")
    browser.go(f"/events/{event['id']}/edit")
    browser.wait_for_text("#main h1", "Edit:")
    assert browser.control("timezone").get_attribute("value") == "America/New_York"
    _check(browser, "admin-edit")
    browser.fill("title", "")
    browser.fill("place_lat", "123")
    browser.click_button("Save changes")
    browser.wait_until(lambda: browser.error_beside("place_lat"), message="latitude error")
    _check(browser, "admin-errors")

    errors = [e for e in browser.console_errors()
              # the 422 the validation screenshot asked for is the browser's network note
              if not (e["page"] == "admin-errors" and "status of 422" in e["message"])]
    assert errors == []


def _bearer(http, account):
    answer = http.post("/auth/token", json={"username": account["username"],
                                            "password": account["password"]})
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_signing_in_with_the_keyboard_alone(browser, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    browser.open("/signin")
    active = browser.driver.switch_to.active_element
    active.send_keys(Keys.TAB)
    assert browser.driver.switch_to.active_element.text == "Skip to content"
    for _ in range(12):
        if browser.driver.switch_to.active_element.get_attribute("name") == "login":
            break
        browser.driver.switch_to.active_element.send_keys(Keys.TAB)
    field = browser.driver.switch_to.active_element
    assert field.get_attribute("name") == "login"
    field.send_keys(account["username"], Keys.TAB)
    browser.driver.switch_to.active_element.send_keys(account["password"], Keys.ENTER)
    browser.wait_for_text("#nav", "Sign out")
    browser.wait_for_text("#flash", f"Signed in as {account['username']}")
