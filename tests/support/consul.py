"""A fake Consul agent: the four HTTP endpoints bus.consul uses, on loopback.

There is no Consul binary here, so the fake implements the documented contract of
exactly those endpoints (register with a TTL check, pass, deregister, KV recurse),
including Consul's habits that matter: keys are case-insensitive in a registration,
a TTL check starts critical, an unknown check is a 404, KV values are base64 and a
read carries X-Consul-Index. Also ``Users``, a minimal service that registers.
"""
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from nameko.rpc import rpc

from bus.consul import ConsulRegistration


class FakeConsul:
    def __init__(self):
        self.services = {}  # id -> registration (keys lower-cased)
        self.checks = {}  # check id -> {"status", "service_id", "passes"}
        self.kv = {}  # key -> bytes
        self.requests = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_PUT(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fake.handle(self, "PUT", body)

            def do_GET(self):
                fake.handle(self, "GET", b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self):
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, request, method, body):
        url = urlsplit(request.path)
        path, query = url.path, parse_qs(url.query)
        with self.lock:
            self.requests.append((method, path))
            status, payload, headers = self.route(method, path, query, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def route(self, method, path, query, body):
        if method == "PUT" and path == "/v1/agent/service/register":
            service = {k.lower(): v for k, v in json.loads(body).items()}
            service_id = service.get("id") or service["name"]
            self.services[service_id] = service
            checks = service.get("checks") or ([service["check"]] if "check" in service else [])
            for check in checks:
                check = {k.lower(): v for k, v in check.items()}
                check_id = check.get("checkid") or f"service:{service_id}"
                self.checks[check_id] = {"status": "critical", "service_id": service_id,
                                         "passes": 0, "definition": check}
            return 200, None, {}
        if method == "PUT" and path.startswith("/v1/agent/check/pass/"):
            check = self.checks.get(path.rsplit("/", 1)[1])
            if check is None:
                return 404, None, {}
            check["status"], check["passes"] = "passing", check["passes"] + 1
            return 200, None, {}
        if method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
            service_id = path.rsplit("/", 1)[1]
            if self.services.pop(service_id, None) is None:
                return 404, None, {}
            self.checks = {k: c for k, c in self.checks.items() if c["service_id"] != service_id}
            return 200, None, {}
        if method == "GET" and path.startswith("/v1/kv/"):
            key = path[len("/v1/kv/"):]
            if "recurse" in query:
                matches = sorted(k for k in self.kv if k.startswith(key))
            else:
                matches = [key] if key in self.kv else []
            if not matches:
                return 404, None, {"X-Consul-Index": "1"}
            items = [{"Key": k, "Flags": 0, "CreateIndex": 1, "ModifyIndex": 1, "LockIndex": 0,
                      "Value": None if self.kv[k] is None
                      else base64.b64encode(self.kv[k]).decode()} for k in matches]
            return 200, items, {"X-Consul-Index": "7"}
        return 405, None, {}


class Users:
    name = "users"
    consul = ConsulRegistration(ttl_seconds=0.3)

    @rpc
    def health(self):
        return "ok"
