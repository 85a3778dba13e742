"""Changing the password on My account (POST /users/me/password)."""
from tests.browser.helpers import new_account


def test_changing_the_password_keeps_this_tab_signed_in_and_ends_the_old_tokens(browser, http):
    account = new_account()
    assert http.post("/users", json=account).status_code == 201
    old_token = http.post("/auth/token", json={"username": account["username"],
                                               "password": account["password"]}).json()
    browser.sign_in(account)
    browser.go("/account")
    browser.fill("current_password", "not my password")
    browser.fill("new_password", "a new password 2")
    browser.click_button("Change password")
    browser.wait_until(lambda: browser.error_beside("current_password"),
                       message="wrong current password")

    browser.fill("current_password", account["password"])
    browser.fill("new_password", "a new password 2")
    browser.click_button("Change password")
    browser.wait_for_text("#flash", "Password changed")
    old = {"Authorization": f"Bearer {old_token['access_token']}"}
    assert http.get("/users/me", headers=old).status_code == 401
    assert http.post("/auth/token", json={"username": account["username"],
                                          "password": "a new password 2"}).status_code == 200
    browser.go("/reminders")  # this tab signed in again with the new password
    browser.wait_for_text("#main h1", "My reminders")
    browser.wait_for_text("#nav", "Sign out")
