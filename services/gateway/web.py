"""The web app (API.md v1.1, "Web app"): the static files under web/, served at ``/``.

The app is plain HTML, CSS and ES modules that call the public API from the same
origin; nothing is built and nothing comes from a CDN (Leaflet is vendored under
web/vendor/leaflet). Every file is read once at start, kept in memory with its gzip
form and an ETag, and answered with a strict Content-Security-Policy: scripts and
styles only from this origin (no inline script, no eval), API calls only to this
origin, images from here plus the tile server of ``MAP_TILE_URL`` when it is set.
``GatewayService`` gets the routes by inheriting ``WebApp``.
"""
import gzip
import hashlib
import html
from pathlib import Path
from urllib.parse import urlsplit

from nameko.exceptions import ConfigurationError
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from bus.config import setting
from bus.errors import NotFound
from services.gateway.http import http

WEB_DIR = Path(__file__).with_name("web")
INDEX = "index.html"
TILE_URL_MARK = "{{MAP_TILE_URL}}"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".map": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
COMPRESSIBLE = {".html", ".js", ".css", ".map", ".svg"}


def tile_source(tile_url):
    """The CSP source that allows ``MAP_TILE_URL``'s images, e.g.
    ``https://*.tile.example.org`` for ``https://{s}.tile.example.org/{z}/{x}/{y}.png``
    (a placeholder is allowed only as the host's first label, as CSP wildcards are)."""
    parts = urlsplit(tile_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"MAP_TILE_URL must be an http(s) URL template: {tile_url!r}")
    labels = parts.netloc.split(".")
    if "{" in labels[0]:
        labels[0] = "*"
    if any("{" in label for label in labels):
        raise ConfigurationError(
            "MAP_TILE_URL may have a placeholder only in the host's first label: "
            f"{tile_url!r}")
    return f"{parts.scheme}://{'.'.join(labels)}"


def content_security_policy(tile_url=None):
    images = "'self'" + (f" {tile_source(tile_url)}" if tile_url else "")
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {images}",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class StaticFile:
    def __init__(self, name, data):
        suffix = Path(name).suffix
        self.content_type = TYPES.get(suffix, "application/octet-stream")
        self.data = data
        self.gzipped = gzip.compress(data, 9, mtime=0) if suffix in COMPRESSIBLE else None
        self.etag = hashlib.sha256(data).hexdigest()[:20]


class WebFiles(DependencyProvider):
    """Every file of web/ in memory, and the headers they are answered with."""

    def setup(self):
        tile_url = setting(self.container.config, "MAP_TILE_URL", "")
        self.headers = {
            "Content-Security-Policy": content_security_policy(tile_url),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "strict-origin-when-cross-origin",
            # a new version must reach the browser at once; the ETag makes a check cheap
            "Cache-Control": "no-cache",
        }
        self.files = {}
        for path in sorted(WEB_DIR.rglob("*")):
            if path.is_file():
                name = path.relative_to(WEB_DIR).as_posix()
                data = path.read_bytes()
                if name == INDEX:
                    data = data.replace(TILE_URL_MARK.encode(),
                                        html.escape(tile_url, quote=True).encode())
                self.files[name] = StaticFile(name, data)

    def get_dependency(self, worker_ctx):
        return self

    def response(self, request, name):
        file = self.files.get(name)
        if file is None:
            raise NotFound("There is no such file.")
        headers = dict(self.headers, ETag=f'"{file.etag}"', Vary="Accept-Encoding")
        if file.etag in request.if_none_match:
            return Response(status=304, headers=headers)
        body = file.data
        if file.gzipped is not None and "gzip" in request.accept_encodings:
            body = file.gzipped
            headers["Content-Encoding"] = "gzip"
        return Response(body, headers=headers, content_type=file.content_type)


class WebApp:
    """The web app's routes, as a base class of the gateway's service class."""

    web = WebFiles()

    @http("GET", "/")
    def web_index(self, request):
        return self.web.response(request, INDEX)

    @http("GET", "/web/<path:name>")
    def web_file(self, request, name):
        return self.web.response(request, name)


# /openapi.json's entries for the web app (openapi.py adds them): HTML and static
# files, not JSON, and no backing service behind them (so no 503).
# (400, 414 and 431: what the HTTP server refuses before any route, as everywhere)
_FILE_RESPONSES = {
    "304": {"description": "Not modified (`If-None-Match` named the current `ETag`)."},
    **{str(code): {"$ref": f"#/components/responses/{name}"} for code, name in [
        (400, "BadRequest"), (404, "NotFound"), (414, "UriTooLong"), (431, "HeadersTooLarge")]},
}
OPENAPI_PATHS = {
    "/": {"get": {
        "summary": "The EventPost web app",
        "tags": ["web app"],
        "description": "HTML that loads the app's scripts and styles from /web/. Served "
                       "with a strict Content-Security-Policy; map tiles from MAP_TILE_URL "
                       "when set.",
        "responses": {"200": {"description": "The app's page",
                              "content": {"text/html": {"schema": {"type": "string"}}}},
                      **_FILE_RESPONSES},
    }},
    "/web/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "get": {
            "summary": "A file of the web app (script, style, image)",
            "tags": ["web app"],
            "description": "gzip when the client accepts it; `Cache-Control: no-cache` "
                           "with an `ETag`.",
            "responses": {"200": {"description": "The file"}, **_FILE_RESPONSES},
        },
    },
}
