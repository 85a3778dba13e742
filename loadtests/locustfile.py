"""The seed mix, ported from the original system's load test; used by Taurus and `invoke bench`.

- ReadMix (weight 7): one list, then GET five event ids taken from it.
- WriteCycle (weight 3): create an event, change it, delete it.
- SearchHeavy (search_heavy.py): topic + near + time window searches.

At 10 users the mix runs 7 readers and 3 writers, closed loop (no wait time).
``MIX_TARGET`` picks the system (default ``eventpost``):

| | eventpost | baseline (loadtests/baseline) |
|---|---|---|
| list | ``GET /events?limit=50`` (the 50 soonest) | ``GET /events`` (at most 50, soonest first) |
| change | ``PATCH /events/{id}`` as an admin | ``PUT /events/{id}``, the whole event, no auth |

Writers use the topic `loadtest` and dates five years ahead, and readers skip
`loadtest` events, so no reader asks for an event a writer is deleting: such a
404 would be by design, and with this rule every non-2xx answer is an error. The
admin's credentials come from ADMIN_USERNAME / ADMIN_PASSWORD (loadtests/run.py and
the bench create a load-test admin over RPC). FastHttpUser, so locust itself is not
what saturates first.
"""
import os
import random
from datetime import datetime, timedelta, timezone

from locust import FastHttpUser, constant, task
from scenario_data import CITIES, TOPICS, iso

WRITE_TOPIC = "loadtest"
TARGET = os.environ.get("MIX_TARGET", "eventpost")
BASELINE = TARGET == "baseline"
LIST_PATH = "/events" if BASELINE else "/events?limit=50"


class ReadMix(FastHttpUser):
    weight = 7
    wait_time = constant(0)  # closed loop: measure what the system sustains

    @task
    def list_then_get_five(self):
        with self.client.get(LIST_PATH, name="GET /events (search)",
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {response.text[:200]}")
                return
            items = [i for i in response.json()["items"] if WRITE_TOPIC not in i["topics"]]
        for item in random.sample(items, min(5, len(items))):
            self.client.get(f"/events/{item['id']}", name="GET /events/{id}")


class WriteCycle(FastHttpUser):
    weight = 3
    wait_time = constant(0)

    def on_start(self):
        self.headers = {}
        if BASELINE:  # the single-service design has no accounts
            return
        if os.environ.get("ADMIN_TOKEN"):
            self.headers = {"Authorization": f"Bearer {os.environ['ADMIN_TOKEN']}"}
            return
        response = self.client.post("/auth/token", name="POST /auth/token", json={
            "username": os.environ["ADMIN_USERNAME"], "password": os.environ["ADMIN_PASSWORD"]})
        response.raise_for_status()
        self.headers = {"Authorization": f"Bearer {response.json()['access_token']}"}

    @task
    def create_change_delete(self):
        starts = datetime.now(timezone.utc) + timedelta(days=5 * 365 + random.randint(0, 90))
        city, (lat, lng) = random.choice(list(CITIES.items()))
        body = {
            "title": f"Load test event in {city}",
            "description": "Created by loadtests/locustfile.py",
            "topics": [WRITE_TOPIC, random.choice(TOPICS)],
            "starts_at": iso(starts),
            "ends_at": iso(starts + timedelta(hours=2)),
            "timezone": "UTC",
            "place": {"name": f"{city} test hall", "address": None, "lat": lat, "lng": lng},
        }
        response = self.client.post("/events", json=body, headers=self.headers,
                                    name="POST /events")
        if response.status_code != 201:
            return
        event_id = response.json()["id"]
        change = {"title": f"Moved: load test event in {city}",
                  "starts_at": iso(starts + timedelta(minutes=30))}
        if BASELINE:
            self.client.put(f"/events/{event_id}", json={**body, **change},
                            name="PUT /events/{id}")
        else:
            self.client.patch(f"/events/{event_id}", headers=self.headers, json=change,
                              name="PATCH /events/{id}")
        self.client.delete(f"/events/{event_id}", headers=self.headers,
                           name="DELETE /events/{id}")
