"""How fast the web app's first page (discover) is usable, and what it weighs.

    .venv/bin/python -m loadtests.web_first_page [--events 10000] [--loads 15]

Starts the whole system as `invoke run` does (loadtests.bench.targets.EventPost: its
own var dir, ports and RabbitMQ vhost), seeds ``--events`` generated events through
the write path, then loads ``/`` in Debian's headless Chromium (Selenium,
chromium-driver) ``--loads`` times, each with the HTTP cache off, and reads from the
browser's performance API: the ``discover-list-rendered`` mark that
pages/discover.js sets once the first page of events is in the list (time since
navigation start), DOMContentLoaded, and every script and style the page loaded
with its compressed (gzip, as served) and uncompressed size. Prints medians.
"""
import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from loadtests.bench.targets import EventPost, seed_events

TIMINGS = """
const nav = performance.getEntriesByType('navigation')[0];
const mark = performance.getEntriesByName('discover-list-rendered')[0];
return {
  list_rendered_ms: mark ? mark.startTime : null,
  dom_content_loaded_ms: nav.domContentLoadedEventEnd,
  html_ms: nav.responseEnd,
  items: document.querySelectorAll('.event-list > li').length,
  resources: performance.getEntriesByType('resource')
    .filter((r) => /\\.(js|css)(\\?|$)/.test(r.name))
    .map((r) => ({name: r.name.replace(location.origin, ''), encoded: r.encodedBodySize,
                  decoded: r.decodedBodySize})),
};
"""


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    return driver


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--loads", type=int, default=15)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="eventpost-web-") as var_dir:
        system = EventPost(Path(var_dir)).start()
        driver = None
        try:
            now = datetime.now(timezone.utc)
            bodies = seed_events(random.Random(10), now, args.events)
            starts = sorted(b["starts_at"] for b in bodies)
            window = {"from": _shift(starts[0], -1), "to": _shift(starts[-1], 1)}
            started = time.monotonic()
            # the first page reads the gateway's read model: wait until it serves every
            # seeded event, not for the search and notifications consumers (at ~20
            # events/s on a loaded machine they take many minutes); what they still have
            # queued is printed with the figures
            system.seed(bodies, window, wait_consumers=False)
            print(f"seeded {args.events:,} events in {time.monotonic() - started:.0f} s",
                  file=sys.stderr)
            backlog = system.vhost.queued("event_created")
            driver = browser()
            runs = []
            for _ in range(args.loads):
                driver.get("about:blank")
                driver.get(f"{system.base_url}/")
                WebDriverWait(driver, 30, poll_frequency=0.02).until(
                    lambda d: d.execute_script(  # the list, and the map's Leaflet too
                        "return performance.getEntriesByName('discover-list-rendered').length"
                        " && document.querySelector('.discover-map.leaflet-container')"))
                runs.append(driver.execute_script(TIMINGS))
            backlog_after = system.vhost.queued("event_created")
        finally:
            if driver is not None:
                driver.quit()
            system.stop()

    report(runs, args)
    print(f"  event_created messages still queued for other consumers: {backlog} before "
          f"the loads, {backlog_after} after")


def _shift(iso, minutes):
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def report(runs, args):
    rendered = [r["list_rendered_ms"] for r in runs]
    loaded = [r["dom_content_loaded_ms"] for r in runs]
    html = [r["html_ms"] for r in runs]
    print(f"first page with {args.events:,} events, {len(runs)} loads, cache off "
          f"({runs[-1]['items']} events in the list):")
    print(f"  list rendered (usable): median {statistics.median(rendered):.0f} ms, "
          f"min {min(rendered):.0f}, max {max(rendered):.0f}")
    print(f"  DOMContentLoaded:       median {statistics.median(loaded):.0f} ms")
    print(f"  HTML received:          median {statistics.median(html):.0f} ms")
    resources = {r["name"]: r for r in runs[-1]["resources"]}
    encoded = sum(r["encoded"] for r in resources.values())
    decoded = sum(r["decoded"] for r in resources.values())
    print(f"  scripts and styles of the first page: {len(resources)} files, "
          f"{encoded / 1024:.1f} KB compressed (gzip as served), {decoded / 1024:.1f} KB "
          "uncompressed")
    for name, r in sorted(resources.items(), key=lambda item: -item[1]["encoded"]):
        print(f"    {name:45} {r['encoded'] / 1024:7.1f} KB  ({r['decoded'] / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
