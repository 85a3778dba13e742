"""HTTP mechanics of the gateway: JSON bodies in, JSON (and JSON errors) out, and auth.

Every response with status >= 400 has API.md's body
``{"error": {"code", "message", "details"}}``: errors raised by a route or by a
backing service (bus.errors, which survive RPC) map to their status and code, the
URL map's own 404/405 are answered by ``JsonWsgiApp``, what eventlet's HTTP server
refuses before any route runs (a malformed request line or header, a bad
Content-Length, 414, 431) by ``JsonHttpProtocol``, and anything else is a bug: 500
``internal_error``, logged with its traceback.
"""
import functools
import hashlib
import inspect
import json
import logging
import re
import socket
import time
import uuid
from datetime import datetime
from http import HTTPStatus

import eventlet
import jwt
from eventlet.wsgi import HeaderLineTooLong, HeadersTooLarge, format_date_time
from nameko.exceptions import ConfigurationError, IncorrectSignature
from nameko.extensions import DependencyProvider
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import HttpOnlyProtocol, WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from bus.config import setting
from bus.errors import (
    BadRequest,
    DomainError,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from services.gateway.feed import ReadModels
from services.gateway.read_models import GONE
from services.gateway.rpc import TimedRpcProxy

log = logging.getLogger(__name__)
access_log = logging.getLogger("services.gateway.access")

MAX_BODY_BYTES = 64 * 1024
BODY_METHODS = {"POST", "PUT", "PATCH"}
JSON_TYPE = "application/json"
INTERNAL_ERROR_MESSAGE = "Something went wrong on our side; it has been logged."
# Which gateway process answered: several share one port (SO_REUSEPORT), and the
# benchmark's projection-lag probe tells them apart by it.
PROCESS_HEADER = "X-EventPost-Gateway"
PROCESS_ID = uuid.uuid4().hex[:12]
LISTEN_BACKLOG = 1024


# --- responses ---------------------------------------------------------------------

def json_response(payload, status=200, headers=None):
    return json_body_response(json.dumps(payload), status, headers)


def json_body_response(body, status=200, headers=None):
    """A response of JSON that is encoded already (the read models keep it encoded)."""
    return Response(body, status=status, headers=headers, mimetype=JSON_TYPE)


def error_body(code, message, details=None):
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(status, code, message, details=None, headers=None):
    return json_response(error_body(code, message, details), status, headers)


def domain_error_response(error):
    headers = {}
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return error_response(error.status, error.code, error.message, error.details, headers)


def exception_response(exc):
    """The JSON response for anything a request raised; only bugs become 500."""
    if isinstance(exc, DomainError) and exc.status != DomainError.status:
        if isinstance(exc, Unavailable):
            log.warning("answering 503: %s %s", exc.message, exc.details)
        return domain_error_response(exc)
    if isinstance(exc, HTTPException):
        return http_exception_response(exc)
    log.error("internal error: %r", exc, exc_info=exc)
    return error_response(500, "internal_error", INTERNAL_ERROR_MESSAGE)


HTTP_CODES = {
    400: "bad_request", 404: "not_found", 405: "method_not_allowed",
    413: "payload_too_large",
}


def http_exception_response(exc):
    """werkzeug's own errors (no route, wrong method) in API.md's error format."""
    if exc.code < 400:  # a redirect is not an error: let werkzeug answer it
        return exc.get_response()
    headers = {}
    details = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
        details["allowed"] = list(exc.valid_methods)
    code = HTTP_CODES.get(exc.code, exc.name.lower().replace(" ", "_"))
    message = {
        404: "There is no such resource.",
        405: "This resource does not support that method.",
    }.get(exc.code, exc.name + ".")
    return error_response(exc.code, code, message, details, headers)


# --- request bodies ----------------------------------------------------------------

class PayloadTooLarge(DomainError):
    # only the gateway raises it, so it is not registered for RPC
    status, code = 413, "payload_too_large"


def has_body(request):
    chunked = request.headers.get("Transfer-Encoding", "").lower() == "chunked"
    return chunked or bool(request.content_length)


def read_json_object(request):
    """The request body as a dict, or None without a body.

    Reads at most 64 KiB + 1 bytes whatever Content-Length says (chunked bodies have
    none), so a client can never make us buffer more than that.
    """
    if not has_body(request):
        return None
    if request.mimetype != JSON_TYPE:
        raise BadRequest(
            "The body must be JSON, sent with Content-Type: application/json.",
            {"content_type": request.content_type or None},
        )
    too_large = PayloadTooLarge(
        f"The body is over {MAX_BODY_BYTES} bytes.", {"max_bytes": MAX_BODY_BYTES}
    )
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    # werkzeug hides chunked bodies (eventlet does not set wsgi.input_terminated), so
    # read eventlet's input, which stops at Content-Length or the last chunk.
    try:
        data = request.environ["wsgi.input"].read(MAX_BODY_BYTES + 1)
    except (ValueError, OSError):  # bad chunk framing, or the client went away mid-body
        raise BadRequest("The body could not be read.") from None
    if len(data) > MAX_BODY_BYTES:
        raise too_large
    try:
        body = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadRequest("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    try:
        # JSON may escape lone surrogates ("\\ud800"), which no service can store as UTF-8
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("The body contains text that is not valid Unicode.") from None
    return body


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# --- the entrypoint ----------------------------------------------------------------

class JsonWsgiApp(WsgiApp):
    """nameko's WsgiApp, with the URL map's 404/405 (and any crash) answered in JSON."""

    def __call__(self, environ, start_response):
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
            request.path_values = values
            response = provider.handle_request(request)
        except Exception as exc:  # HTTPException from match(), or a bug
            response = exception_response(exc)
        response.headers[PROCESS_HEADER] = PROCESS_ID
        return response(environ, start_response)


# --- what the HTTP server refuses before any route runs -------------------------------

# The request line (method, URI, version) eventlet reads at most; a longer one is a 414.
MAX_REQUEST_LINE = 8192
CONTENT_LENGTH = re.compile(r"[0-9]+")
# After refusing a request whose rest we did not read, keep reading (and dropping) it
# for a moment: closing a socket with unread input sends a reset, and a reset can
# destroy our answer before the client has read it.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1 << 20
PROTOCOL_ERRORS = {
    400: ("bad_request", "The request line or a header is malformed."),
    414: ("uri_too_long", f"The request line is over {MAX_REQUEST_LINE} bytes."),
    431: ("headers_too_large", "A header line, or the headers together, are too large."),
    505: ("http_version_not_supported", "Only HTTP/1.0 and HTTP/1.1 are served."),
}


class JsonHttpProtocol(HttpOnlyProtocol):
    """eventlet's HTTP/1.1 protocol, with the errors it answers by itself (plain text,
    or nothing at all) answered in API.md's JSON error body instead.

    eventlet.wsgi.HttpProtocol (0.41) writes fixed byte strings for a request line
    over its limit (414, empty), header lines over 8 KiB or headers over 64 KiB
    (400, empty) and a negative or non-numeric Content-Length (400, empty); the
    stdlib's BaseHTTPRequestHandler.send_error answers a malformed request line,
    more than 100 headers and HTTP/2+ in HTML. Each of those is caught here first.
    """

    def _read_request_line(self):
        line = super()._read_request_line()
        if len(line) >= self.server.url_length_limit:
            self.refuse(414, {"max_bytes": self.server.url_length_limit})
            return b""  # eventlet then closes the connection without writing anything
        return line

    def parse_request(self):
        try:
            if not super().parse_request():  # send_error (below) has answered
                return False
        except (HeaderLineTooLong, HeadersTooLarge):
            self.refuse(431)
            return False
        lengths = self.headers.get_all("Content-Length") or []
        if lengths:
            if len(set(lengths)) > 1 or not CONTENT_LENGTH.fullmatch(lengths[0].strip()):
                self.refuse(400, {"content_length": ["Must be one whole number of bytes."]})
                return False
            if "Transfer-Encoding" in self.headers:
                self.refuse(400, {"content_length": [
                    "Give either Content-Length or Transfer-Encoding, not both."]})
                return False
        return True

    def send_error(self, code, message=None, explain=None):
        """The stdlib's error answer (request line, header count, version), in JSON."""
        log.debug("refused a request: %s %s", code, message)
        self.refuse(code if code in PROTOCOL_ERRORS else 400)

    def refuse(self, status, details=None):
        code, message = PROTOCOL_ERRORS[status]
        body = json.dumps(error_body(code, message, details)).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            f"Content-Type: {JSON_TYPE}\r\nContent-Length: {len(body)}\r\n"
            f"Date: {format_date_time(time.time())}\r\n{PROCESS_HEADER}: {PROCESS_ID}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        self.close_connection = 1
        try:
            self.wfile.write(head + body)
            self.wfile.flush()
            self._drain_and_close()
        except OSError:  # the client is gone: nobody to answer
            pass

    def _drain_and_close(self):
        self.connection.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + LINGER_SECONDS
        dropped = 0
        while dropped < LINGER_BYTES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.connection.settimeout(left)
            data = self.connection.recv(65536)
            if not data:
                break
            dropped += len(data)


class JsonWebServer(WebServer):
    # a subclass is its own shared extension: the gateway's routes all use this one
    def get_wsgi_app(self):
        return JsonWsgiApp(self)

    def start(self):
        if not self._starting:
            self._starting = True
            # SO_REUSEPORT: several gateway processes serve one port (`--instances
            # gateway=N`); a deep backlog: a burst of new clients is queued, not refused.
            self._sock = eventlet.listen(self.bind_addr, backlog=LISTEN_BACKLOG, reuse_port=True)
            self._sock.settimeout(None)  # as nameko does: kombu#838
            self._serv = self.get_wsgi_server(self._sock, self.get_wsgi_app())
            self._gt = self.container.spawn_managed_thread(self.run)

    def process_request(self, sock, address):
        # Headers and a large body go out in separate writes; with Nagle's algorithm the
        # body then waits for the client's delayed ACK (40 ms a response at 50 events).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().process_request(sock, address)

    def get_wsgi_server(self, sock, wsgi_app, protocol=JsonHttpProtocol, debug=False):
        server = super().get_wsgi_server(sock, wsgi_app, protocol, debug)
        server.url_length_limit = MAX_REQUEST_LINE
        # One line per request costs ~10% of a cached read through the JSON formatter:
        # the access log is at DEBUG (LOG_LEVEL=DEBUG turns it on).
        server.log = access_log
        server.log_output = access_log.isEnabledFor(logging.DEBUG)
        return server


class WorkerPool(DependencyProvider):
    """Gives the gateway ``GATEWAY_MAX_WORKERS`` workers (config), whatever
    ``max_workers`` the other services run with: each HTTP request is a worker, and a
    worker waiting on an RPC reply must not make 200 clients queue behind 10."""

    def setup(self):
        size = int(setting(self.container.config, "GATEWAY_MAX_WORKERS", 200))
        self.container.max_workers = size
        self.container._worker_pool.resize(size)


class HttpEntrypoint(HttpRequestHandler):
    """``@http(method, url)``: a route whose worker returns JSON-able values.

    POST/PUT/PATCH routes receive the parsed body as ``body``; a request with a
    body on any route must be JSON (object, <= 64 KiB). ``body="optional"``: a POST
    that takes no fields (no body reads as None); ``body="ignored"``: the body is not
    read at all (the form posts of one-click links). A route returns a payload (200),
    ``(status, payload)``, ``(status, headers, payload)``, a Response, or None (204).
    """

    server = JsonWebServer()
    BODIES = ("required", "optional", "ignored")

    def __init__(self, method, url, expected_exceptions=DomainError, body="required",
                 **kwargs):
        if body not in self.BODIES:
            raise ValueError(f"body must be one of {self.BODIES}")
        self.body = body
        super().__init__(method, url, expected_exceptions=expected_exceptions, **kwargs)

    def setup(self):
        super().setup()
        # The route's arguments are fixed by its URL: check them once here, not per
        # request as nameko does (inspect.getcallargs cost ~10% of a cached read).
        rule = Rule(self.url)
        Map([rule])  # a rule learns its arguments when a map compiles it
        names = {"request", *rule.arguments}
        if self.method in BODY_METHODS and self.body != "ignored":
            names.add("body")
        fn = getattr(self.container.service_cls, self.method_name)
        try:
            inspect.signature(fn).bind(None, **dict.fromkeys(names))
        except TypeError as error:
            raise IncorrectSignature(f"{self.method_name}: {error}") from None

    def check_signature(self, args, kwargs):
        pass  # checked once in setup

    def get_entrypoint_parameters(self, request):
        args, kwargs = super().get_entrypoint_parameters(request)
        if self.body == "ignored":
            return args, kwargs
        body = read_json_object(request)
        if self.method in BODY_METHODS:
            if body is None and self.body == "required":
                raise BadRequest("This request needs a JSON object body.")
            kwargs = dict(kwargs, body=body)
        return args, kwargs

    def response_from_result(self, result):
        return result_response(result)

    def response_from_exception(self, exc):
        return exception_response(exc)


http = HttpEntrypoint.decorator


def result_response(result):
    """The response for what a route returned (HttpEntrypoint's forms)."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status=204)
    if not isinstance(result, tuple):
        return json_response(result)
    status, headers, payload = result if len(result) == 3 else (result[0], None, result[1])
    return json_response(payload, status, headers)


# --- Idempotency-Key (API.md v1.1) ----------------------------------------------------

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,127}")
REPLAYED_HEADER = "Idempotent-Replayed"
# Answers that say nothing final about the request are not kept: a retry runs it again.
# 5xx: its outcome is unknown (a create that did happen is found again by its command
# id); 401: the caller could not be told apart; 429: it did not run.
NOT_KEPT = {401, 429}
UNKEPT_HEADERS = {"content-length", "date", PROCESS_HEADER.lower()}


def idempotent(route):
    """For a POST route: with ``Idempotency-Key``, a retry by the same caller (the
    token's account, else the client address) within 24 h gets the first response
    again and runs nothing; the same key with another method, path or body is a 422
    naming the header; while the first still runs, 409. The records live in the users
    service (claim_request), so every gateway process and a restart see them.

    The route finds ``request.command_id`` (from caller and key): a create passes it
    on as the new resource's id, so running it again after an unknown outcome (a 503
    after the command was done) finds the resource instead of making a second one."""

    @functools.wraps(route)
    def keyed(self, request, *args, **kwargs):
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return route(self, request, *args, **kwargs)
        if not IDEMPOTENCY_KEY.fullmatch(key):
            raise ValidationError({IDEMPOTENCY_HEADER: [
                "1 to 128 printable ASCII characters, not starting with a space."]})
        caller = self.auth.identity(request)
        fingerprint = hashlib.sha256(json.dumps(
            [request.method, request.path, request.query_string.decode("latin-1"),
             kwargs.get("body")], sort_keys=True).encode()).hexdigest()
        claimed = self.users.claim_request(caller, key, fingerprint)
        if "response" in claimed:
            kept = claimed["response"]
            return Response(kept["body"], status=kept["status"],
                            headers=[*kept["headers"], (REPLAYED_HEADER, "true")])
        request.command_id = hashlib.sha256(
            json.dumps([caller, key]).encode()).hexdigest()[:32]
        try:
            response = result_response(route(self, request, *args, **kwargs))
        except Exception as exc:
            response = exception_response(exc)
        try:
            if response.status_code >= 500 or response.status_code in NOT_KEPT:
                self.users.release_request(caller, key, claimed["claim"])
            else:
                self.users.finish_request(caller, key, claimed["claim"], {
                    "status": response.status_code,
                    "headers": [(name, value) for name, value in response.headers
                                if name.lower() not in UNKEPT_HEADERS],
                    "body": response.get_data(as_text=True),
                })
        except DomainError as error:  # users did not answer: the claim's lease runs out
            log.warning("could not record the answer to an idempotent request: %s", error)
        return response

    keyed.idempotent = True
    return keyed


def command_id(request):
    """``{"command_id": ...}`` for a create under an Idempotency-Key (``idempotent``), else {}."""
    found = getattr(request, "command_id", None)
    return {} if found is None else {"command_id": found}


# --- auth --------------------------------------------------------------------------

class TokenVerifier:
    """Checks ``Authorization: Bearer <jwt>``: HS256, signed with JWT_SECRET, unexpired."""

    def __init__(self, secret):
        self.secret = secret

    def claims(self, authorization):
        if not authorization:
            raise Unauthorized("A bearer token is required.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        try:
            claims = jwt.decode(
                token.strip(), self.secret, algorithms=["HS256"],
                options={"require": ["sub", "exp"]},
            )
        except jwt.InvalidTokenError:
            raise Unauthorized("The bearer token is invalid or expired.") from None
        if not isinstance(claims["sub"], str):
            raise Unauthorized("The bearer token is invalid or expired.")
        return claims


def issued_before(claims, moment):
    """True if the token was issued before ``moment`` (ISO time of the account's last
    password change, or None); ``iat`` has millisecond precision (users.tokens)."""
    if moment is None:
        return False
    iat = claims.get("iat")
    if not isinstance(iat, (int, float)) or isinstance(iat, bool):
        return True
    changed = datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()
    return round(iat * 1000) < round(changed * 1000)


class Caller:
    """Who is calling: the token's claims, and the account they name as it is now
    (the accounts read model, or the users service for one it does not hold)."""

    def __init__(self, verifier, accounts, users):
        self.verifier = verifier
        self.accounts = accounts
        self.users = users

    def user(self, request):
        """The caller's user resource; 401 unless the token is valid and the account exists."""
        claims = self.verifier.claims(request.headers.get("Authorization"))
        user = self.accounts.get(claims["sub"])
        if user is None:
            try:
                user = self.users.get(claims["sub"])
            except NotFound:
                user = GONE
            else:
                self.accounts.apply(user)
        if user is GONE:  # deleted since the token was issued: it stops working
            raise Unauthorized("The account of this token no longer exists.")
        if issued_before(claims, user.get("tokens_valid_after")):
            raise Unauthorized("The token was issued before the password was changed.")
        return user

    def identity(self, request):
        """Who makes the request, for Idempotency-Key: the token's account, or, without a
        valid token, the client's address."""
        try:
            return "user:" + self.verifier.claims(request.headers.get("Authorization"))["sub"]
        except Unauthorized:
            return f"address:{request.remote_addr}"

    def admin(self, request):
        """As ``user``, and 403 unless the account is an admin now (the role in the token
        may be older)."""
        user = self.user(request)
        if user["role"] != "admin":
            raise Forbidden("This needs an admin account.")
        return user


class Auth(TimedRpcProxy):
    """Dependency: ``self.auth.user(request)`` / ``self.auth.admin(request)``."""

    def __init__(self, **options):
        super().__init__("users", **options)

    def setup(self):
        super().setup()
        secret = setting(self.container.config, "JWT_SECRET")
        if not secret:  # an empty key would make any token signed with "" valid
            raise ConfigurationError("JWT_SECRET is not set")
        self.verifier = TokenVerifier(secret)

    def start(self):
        super().start()
        self.accounts = next(d for d in self.container.dependencies
                             if isinstance(d, ReadModels)).accounts

    def get_dependency(self, worker_ctx):
        return Caller(self.verifier, self.accounts, super().get_dependency(worker_ctx))
