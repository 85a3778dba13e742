"""The gateway in a real nameko container on a loopback port, with real RabbitMQ.

Backing services are stand-ins declared by the tests (a class named ``users`` with
@rpc methods): the gateway's job is the HTTP contract, not what users stores.
"""
import time
from urllib.parse import urljoin

import jwt
import pytest
import requests

from services.gateway.service import GatewayService
from tests.support.secantus import free_port

RPC_TIMEOUT = 1


class Client:
    """What nameko's web_session did, minus its werkzeug 3 breakage."""

    def __init__(self, base_url):
        self.base_url = base_url
        self.session = requests.Session()

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, urljoin(self.base_url, path), **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.request("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def gateway_config(service_config):
    return dict(
        service_config,
        WEB_SERVER_ADDRESS=f"127.0.0.1:{free_port()}",
        RPC_TIMEOUT=RPC_TIMEOUT,
    )


@pytest.fixture
def start_service(container_factory, gateway_config):
    def start(service_cls):
        container = container_factory(service_cls, gateway_config)
        container.start()
        return container

    return start


@pytest.fixture
def client(start_service, gateway_config):
    start_service(GatewayService)
    return Client(f"http://{gateway_config['WEB_SERVER_ADDRESS']}/")


@pytest.fixture
def make_token(gateway_config):
    def make(sub="u-1", role="user", expires_in=3600, secret=None, **claims):
        now = int(time.time())
        payload = {"sub": sub, "role": role, "iat": now, "exp": now + expires_in,
                   "jti": f"jti-{sub}-{now}", **claims}
        return jwt.encode(payload, secret or gateway_config["JWT_SECRET"], algorithm="HS256")

    return make


def bearer(token):
    return {"Authorization": f"Bearer {token}"}
