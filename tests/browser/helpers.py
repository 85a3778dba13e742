"""Accounts and events the browser tests set up through the API."""
import uuid


def new_account():
    name = f"w_{uuid.uuid4().hex[:10]}"
    return {"username": name, "email": f"{name}@example.org", "password": "correct horse 1"}


def create_event(http, headers, **fields):
    body = {"title": "An event", "topics": ["misc"], "starts_at": "2030-01-01T18:00:00Z",
            **fields}
    response = http.post("/events", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()

