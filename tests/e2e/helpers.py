"""Account helpers and the error-format check shared by the e2e test modules."""
import uuid


def new_account(suffix=None):
    name = f"u_{suffix or uuid.uuid4().hex[:12]}"
    return {"username": name, "email": f"{name}@example.org", "password": "correct horse 1"}


def login(http, account):
    response = http.post("/auth/token", json={"username": account["username"],
                                              "password": account["password"]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def assert_error(response, status, code, fields=()):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    for field in fields:
        assert field in error["details"], error["details"]
        assert isinstance(error["details"][field], list) and error["details"][field]
