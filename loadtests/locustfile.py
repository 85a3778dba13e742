"""EventPost's load scenarios, ported from the original system's load test.

- ReadMix (weight 7): one search, then GET five event ids taken from its results.
- WriteCycle (weight 3): an admin creates an event, changes it, deletes it.
- SearchHeavy (search_heavy.py): topic + near + time window searches.

At concurrency 10 the mix runs 7 readers and 3 writers. Writers use the topic
`loadtest` and dates five years ahead, so a reader never picks an event that a
writer is about to delete (that 404 would be a false error). The admin's
credentials come from ADMIN_USERNAME / ADMIN_PASSWORD (loadtests/run.py creates a
load-test admin over RPC when they are unset).
"""
import os
import random
from datetime import datetime, timedelta, timezone

from locust import HttpUser, constant, task
from scenario_data import CITIES, TOPICS, iso

WRITE_TOPIC = "loadtest"


class ReadMix(HttpUser):
    weight = 7
    wait_time = constant(0)  # closed loop: measure what the system sustains

    @task
    def search_then_get_five(self):
        params = {"limit": 20}
        if random.random() < 0.5:
            params["topic"] = random.choice(TOPICS)
        with self.client.get("/events", params=params, name="GET /events (search)",
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {response.text[:200]}")
                return
            items = [i for i in response.json()["items"] if WRITE_TOPIC not in i["topics"]]
        for item in items[:5]:
            self.client.get(f"/events/{item['id']}", name="GET /events/{id}")


class WriteCycle(HttpUser):
    weight = 3
    wait_time = constant(0)

    def on_start(self):
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
        self.client.patch(f"/events/{event_id}", headers=self.headers, name="PATCH /events/{id}",
                          json={"title": f"Moved: load test event in {city}",
                                "starts_at": iso(starts + timedelta(minutes=30))})
        self.client.delete(f"/events/{event_id}", headers=self.headers,
                           name="DELETE /events/{id}")
