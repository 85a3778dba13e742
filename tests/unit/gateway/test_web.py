"""The web app's files as the gateway serves them: the CSP, the tile host, caching."""
import pytest
from nameko.exceptions import ConfigurationError
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from bus.errors import NotFound
from services.gateway.web import WEB_DIR, WebFiles, content_security_policy, tile_source


class Container:
    def __init__(self, config):
        self.config = config


def web_files(**config):
    files = WebFiles()
    files.container = Container(config)
    files.setup()
    return files


def request(**headers):
    return Request(EnvironBuilder(path="/", headers=headers).get_environ())


def test_the_policy_allows_no_inline_script_and_no_other_origin():
    policy = content_security_policy()
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "img-src 'self';" in policy
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_the_tile_server_is_added_to_img_src_only():
    policy = content_security_policy("https://{s}.tile.example.org/{z}/{x}/{y}.png")
    assert "img-src 'self' https://*.tile.example.org;" in policy
    assert "script-src 'self';" in policy
    assert tile_source("http://tiles.local:8080/{z}/{x}/{y}.png") == "http://tiles.local:8080"


@pytest.mark.parametrize("url", ["ftp://x/{z}", "tiles/{z}/{x}/{y}.png", "https://a.{s}.example/{z}"])
def test_a_tile_url_the_policy_cannot_express_is_refused_at_start(url):
    with pytest.raises(ConfigurationError):
        web_files(MAP_TILE_URL=url)


def test_the_page_carries_the_policy_and_the_escaped_tile_url():
    files = web_files(MAP_TILE_URL='https://{s}.t.example/{z}/{x}/{y}.png?a=1&b="2"')
    response = files.response(request(), "index.html")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"].count("https://*.t.example") == 1
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = response.get_data(as_text=True)
    assert 'content="https://{s}.t.example/{z}/{x}/{y}.png?a=1&amp;b=&quot;2&quot;"' in page
    assert "<script>" not in page and " on" not in page.split("<body>")[1].split("<main")[0]


def test_files_are_gzipped_when_asked_and_answer_304_to_their_etag():
    files = web_files()
    plain = files.response(request(), "app.js")
    assert plain.content_type.startswith("text/javascript")
    assert "Content-Encoding" not in plain.headers
    zipped = files.response(request(**{"Accept-Encoding": "gzip, br"}), "app.js")
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(zipped.get_data()) < len(plain.get_data())
    again = files.response(request(**{"If-None-Match": plain.headers["ETag"]}), "app.js")
    assert again.status_code == 304


def test_every_file_is_served_and_nothing_outside_the_folder():
    files = web_files()
    on_disk = {p.relative_to(WEB_DIR).as_posix() for p in WEB_DIR.rglob("*") if p.is_file()}
    assert on_disk == set(files.files)
    assert {"vendor/leaflet/leaflet.js", "vendor/leaflet/LICENSE", "pages/discover.js"} <= on_disk
    for name in ("../web.py", "/etc/passwd", "vendor/../../web.py", "nope.js"):
        with pytest.raises(NotFound):
            files.response(request(), name)


def test_setup_cfg_ships_every_file_of_the_web_app():
    """A non-editable install (wheel, Docker image) carries what package_data names."""
    import configparser

    config = configparser.ConfigParser()
    config.read(WEB_DIR.parents[2] / "setup.cfg")
    patterns = config["options.package_data"]["services.gateway"].split()
    package = WEB_DIR.parent
    shipped = {p for pattern in patterns for p in package.glob(pattern) if p.is_file()}
    assert shipped == {p for p in WEB_DIR.rglob("*") if p.is_file()}
