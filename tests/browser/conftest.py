"""The web app in a real browser: Debian's headless Chromium driven by Selenium
(through chromium-driver; `invoke install` apt-installs both), against the whole
system started as the e2e tests start it (tests/e2e/conftest.py's running_system),
one system and one browser for every test here. Every test under tests/browser is
marked ``e2e``.

``browser`` is a Browser: ``open(route)``, waits for elements, fills fields, takes
screenshots of a page at 1280 and 360 px under var/screenshots/, and keeps every
console message the pages wrote (``console_errors()``).
"""
import shutil
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.conftest import BaseUrlSession, running_system
from tests.e2e.helpers import login
from tools.system import PROJECT_ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = PROJECT_ROOT / "var" / "screenshots"
WIDTHS = {"1280": (1280, 900), "360": (360, 780)}
WAIT = 10.0


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def system(request, tmp_path_factory, rabbit_manager):
    with running_system(request, rabbit_manager, tmp_path_factory.mktemp("eventpost-web"),
                        name="web", label="browser tests", mongo_uri="") as running:
        yield running


@pytest.fixture
def http(system):
    with BaseUrlSession(system.base_url) as session:
        yield session


@pytest.fixture(scope="session")
def admin(system):
    user, password = system.create_admin()
    return {"username": user["username"], "email": user["email"], "password": password}


@pytest.fixture
def admin_headers(http, admin):
    return login(http, admin)


class Browser:
    def __init__(self, driver, base_url):
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.console = []  # every console entry seen: {"level", "message", "page"}

    # -- pages ------------------------------------------------------------------

    def open(self, route="/"):
        """The app at ``#<route>``; waits until the page has rendered its heading."""
        self.driver.get(f"{self.base_url}/#{route}")
        self.wait_for("#main h1")
        self.collect_console(route)

    def go(self, route):
        """Navigate inside the running app (a hash change, no reload)."""
        self.driver.execute_script("location.hash = arguments[0]", route)
        self.wait_for("#main h1")

    def sign_out(self):
        """Forget the token and leave the app, so the next open() starts afresh."""
        if self.driver.current_url.startswith(self.base_url):
            self.collect_console()
            self.driver.execute_script("sessionStorage.clear()")
        self.driver.get("about:blank")

    def sign_in(self, account):
        self.sign_out()
        self.open("/signin")
        self.fill("login", account["username"])
        self.fill("password", account["password"])
        self.click_button("Sign in")
        self.wait_for_text("#nav", "Sign out")

    # -- finding and waiting ------------------------------------------------------

    def find(self, css):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_until(self, condition, timeout=WAIT, message=""):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                                 ignored_exceptions=(StaleElementReferenceException,)
                                 ).until(lambda _: condition())
        except TimeoutException:
            raise AssertionError(f"waited {timeout}s: {message}; page text:\n"
                                 f"{self.find('body').text[:2000]}") from None

    def wait_for(self, css, timeout=WAIT):
        return self.wait_until(lambda: (self.find_all(css) or [None])[0], timeout,
                               f"no element {css!r}")

    def wait_for_text(self, css, text, timeout=WAIT):
        def found():
            return next((el for el in self.find_all(css) if text in el.text), None)
        return self.wait_until(found, timeout, f"no {css!r} with text {text!r}")

    # -- forms --------------------------------------------------------------------

    def control(self, name, within="#main"):
        return self.wait_for(f"{within} [name={name!r}]")

    def fill(self, name, value, within="#main"):
        control = self.control(name, within)
        control.clear()
        control.send_keys(value)
        return control

    def set_value(self, name, value, within="#main"):
        """For date and time inputs, whose typing depends on the locale."""
        control = self.control(name, within)
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            "arguments[0].dispatchEvent(new Event('change', {bubbles: true}));",
            control, value)
        return control

    def select(self, name, value, within="#main"):
        Select(self.control(name, within)).select_by_value(value)

    def click_button(self, text, within="#main"):
        button = self.wait_for_text(f"{within} button", text)
        button.click()
        return button

    def error_beside(self, name, within="#main"):
        """The message shown beside a form's field ``name``."""
        return self.find(f'{within} [data-error-for="{name}"]').text

    # -- console and screenshots --------------------------------------------------

    def collect_console(self, page=""):
        for entry in self.driver.get_log("browser"):
            self.console.append({**entry, "page": page})

    def console_errors(self):
        self.collect_console()
        return [e for e in self.console if e["level"] in ("SEVERE", "ERROR")]

    def next_frames(self):
        """Return once the page has drawn two more frames: what a resize, and Leaflet's
        redraw on the frame after it (its resize handler waits for one), have painted."""
        self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "requestAnimationFrame(() => requestAnimationFrame(() => done()));")

    def screenshots(self, name):
        """The current page at each width, as var/screenshots/<name>-<width>.png."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        paths = []
        for label, (width, height) in WIDTHS.items():
            self.driver.set_window_size(width, height)
            self.driver.execute_script("window.dispatchEvent(new Event('resize'))")
            self.next_frames()  # Leaflet redraws at the new size on the next frame
            path = SCREENSHOTS / f"{name}-{label}.png"
            # the whole page, not only the window: as tall as the document
            full = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, max(height, min(full + 140, 4000)))
            self.next_frames()
            self.driver.save_screenshot(str(path))
            paths.append(path)
        self.driver.set_window_size(*WIDTHS["1280"])
        return paths


@pytest.fixture(scope="session")
def chromium():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver: "
                    "run `invoke install`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--lang=en-US", "--disable-gpu"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def browser_session(chromium, system):
    return Browser(chromium, system.base_url)


@pytest.fixture
def browser(browser_session):
    """The shared browser, signed out, at the width of a desktop."""
    browser_session.driver.set_window_size(*WIDTHS["1280"])
    browser_session.sign_out()
    return browser_session
