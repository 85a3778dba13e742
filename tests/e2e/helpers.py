"""Account helpers and the error-format check shared by the e2e test modules."""
import uuid
from urllib.parse import quote, urljoin

import requests
from requests.adapters import HTTPAdapter

from services.gateway.http import MAX_REQUEST_LINE


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


class _FromAddress(HTTPAdapter):
    def __init__(self, address):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, source_address=(self.address, 0), **kwargs)


class ClientAt(requests.Session):
    """A client whose connections come from another loopback address (127.0.0.0/8 is
    all ours on Linux), so the gateway sees a different client."""

    def __init__(self, base_url, address):
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.mount("http://", _FromAddress(address))

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, urljoin(self.base_url, url.lstrip("/")), *args, **kwargs)


def assert_hand_made_cursors_refused(http, path, cursors, headers=None):
    """GET ``path`` with each of ``cursors`` (tests/unit/bus/test_cursors.py's, as bytes
    on the wire: a lone surrogate as its UTF-8 form): a 400 or 422 naming `cursor`
    with the JSON error body, never a 500 (issue 9). One past the request line's limit
    is the HTTP layer's 414 (tests/integration/gateway/test_http_layer.py), left out."""
    joiner = "&" if "?" in path else "?"
    sent = [quote(c.encode("utf-8", "surrogatepass")) for c in cursors]
    for cursor in [c for c in sent if len(c) < MAX_REQUEST_LINE - 200]:
        response = http.get(f"{path}{joiner}cursor={cursor}", headers=headers)
        assert response.status_code in (400, 422), (path, cursor[:60], response.text)
        assert_error(response, response.status_code, response.json()["error"]["code"],
                     ["cursor"])
