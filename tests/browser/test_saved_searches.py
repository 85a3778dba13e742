"""Saved searches in the web app: "Save this search" on discover from its filters, the
alert email at the SMTP server, and the list with its delete button on My account."""
import uuid
from datetime import datetime, timedelta, timezone

from tests.browser.helpers import create_event, new_account
from tests.browser.test_pages import _check


def test_save_a_search_from_discover_get_its_alert_and_delete_it(
        browser, system, http, admin_headers):
    browser.console.clear()
    topic = f"salsa{uuid.uuid4().hex[:6]}"
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    browser.sign_in(account)
    browser.open(f"/?topic={topic}&near=41.39,2.17&radius_km=20")
    browser.fill("name", "Salsa in Barcelona")
    browser.select("frequency", "instant")
    browser.click_button("Save this search")
    browser.wait_for_text("#flash", 'Saved "Salsa in Barcelona"')

    starts = (datetime.now(timezone.utc) + timedelta(days=3)).isoformat()
    mark = system.mark()
    event = create_event(http, admin_headers, title=f"Salsa night {topic}", topics=[topic],
                         starts_at=starts, place={"name": "Plaça", "lat": 41.40, "lng": 2.16})
    [mail] = system.wait_for_mail(to=account["email"], subject=event["title"], after=mark,
                                  timeout=20)
    assert "Plaça" in mail.text and mail.message["List-Unsubscribe"]

    browser.go("/account")
    row = browser.wait_for_text(".saved-search", "Salsa in Barcelona")
    assert f"topics: {topic}" in row.text and "within 20 km of 41.39,2.17" in row.text
    assert "instant" in row.text and account["email"] in row.text
    _check(browser, "account-saved-searches")
    browser.click_button("Delete", within=".saved-search")
    browser.wait_for_text("#flash", "deleted")
    browser.wait_for_text("#main [role=status]", "No saved searches yet")
    assert browser.console_errors() == []


def test_a_bad_place_is_shown_on_the_save_form(browser, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    browser.sign_in(account)
    browser.open("/?near=95,2")
    browser.fill("name", "Nowhere")
    browser.click_button("Save this search")
    browser.wait_for_text(".save-search .form-error", "lat must be in")
