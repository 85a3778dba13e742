"""Search-heavy scenario: what a person planning their week asks for.

A topic, near one of the seeded cities (25 km), starting in the next 7 days.
"""
import random
from datetime import datetime, timedelta, timezone

from locust import HttpUser, constant, task
from scenario_data import CITIES, TOPICS, iso


class SearchHeavy(HttpUser):
    wait_time = constant(0)

    @task
    def topic_near_this_week(self):
        lat, lng = random.choice(list(CITIES.values()))
        now = datetime.now(timezone.utc)
        params = {"topic": random.choice(TOPICS), "near": f"{lat},{lng}", "radius_km": 25,
                  "from": iso(now), "to": iso(now + timedelta(days=7)), "limit": 20}
        if random.random() < 0.3:
            params["sort"] = "distance"
        self.client.get("/events", params=params, name="GET /events (topic+near+window)")
