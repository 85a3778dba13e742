"""What the load scenarios ask for: the topics and cities `invoke seed` uses.

Kept apart from the locustfiles, which import locust (and with it gevent's
monkey-patching), so plain scripts such as search_cost.py can share it.
"""
TOPICS = ["music", "tech", "food", "art", "sport", "film", "books", "outdoor", "dance",
          "family"]
CITIES = {  # city centres
    "Paris": (48.8566, 2.3522), "Berlin": (52.5200, 13.4050), "London": (51.5072, -0.1276),
    "Lisbon": (38.7223, -9.1393), "Madrid": (40.4168, -3.7038), "New York": (40.7128, -74.0060),
}


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
