"""What the HTTP server itself refuses, before any route runs, over a real socket.

Each request is sent as raw bytes, since no HTTP client library sends them broken;
the answer must still be API.md's JSON error body with the right status and code.
"""
import json
import socket

import pytest

pytestmark = pytest.mark.integration


def exchange(address, request):
    """Send ``request`` as it is; the status, headers and JSON body of the answer."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body), reply
    return int(status_line.split()[1]), headers, json.loads(body)


@pytest.fixture
def address(client, gateway_config):
    return gateway_config["WEB_SERVER_ADDRESS"]


def assert_refused(address, request, status, code):
    got, headers, body = exchange(address, request)
    assert (got, body["error"]["code"]) == (status, code), body
    assert headers["content-type"] == "application/json"
    assert body["error"]["message"] and isinstance(body["error"]["details"], dict)
    # and the server goes on serving
    assert exchange(address, b"GET /no-such-route HTTP/1.1\r\nHost: x\r\n"
                             b"Connection: close\r\n\r\n")[0] == 404
    return body["error"]


def test_a_request_line_over_8_kib_is_a_json_414(address):
    line = b"GET /events?q=" + b"a" * 9000 + b" HTTP/1.1\r\n"
    error = assert_refused(address, line + b"Host: x\r\n\r\n", 414, "uri_too_long")
    assert error["details"]["max_bytes"] == 8192


def test_a_long_request_line_still_within_the_limit_is_served(address):
    status, _, _ = exchange(address, b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert status == 404


@pytest.mark.parametrize("headers", [
    b"X-Big: " + b"b" * 9000 + b"\r\n",  # one header line over 8 KiB
    b"".join(b"X-H%d: %s\r\n" % (i, b"h" * 4000) for i in range(20)),  # 80 KiB in all
    b"".join(b"X-H%d: 1\r\n" % i for i in range(150)),  # more than 100 headers
], ids=["line", "total", "count"])
def test_headers_too_large_are_a_json_431(address, headers):
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    assert_refused(address, request, 431, "headers_too_large")


@pytest.mark.parametrize("request_line", [
    b"NONSENSE\r\n",
    b"GET / HTTP/1.1 extra\r\n",
    b"GET / HTTX/1.1\r\n",
    b"GET / HTTP/1.x\r\n",
    b"POST /users\r\n",  # HTTP/0.9 had only GET
], ids=["one-word", "four-words", "not-http", "bad-version", "0.9-post"])
def test_a_malformed_request_line_is_a_json_400(address, request_line):
    assert_refused(address, request_line + b"Host: x\r\n\r\n", 400, "bad_request")


def test_http_2_on_the_http_1_port_is_a_json_505(address):
    assert_refused(address, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505,
                   "http_version_not_supported")


@pytest.mark.parametrize("length_headers", [
    b"Content-Length: -1\r\n",
    b"Content-Length: abc\r\n",
    b"Content-Length: 1_0\r\n",
    b"Content-Length: \r\n",
    b"Content-Length: 2\r\nContent-Length: 3\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
], ids=["negative", "not-a-number", "underscore", "empty", "two-values", "and-chunked"])
def test_a_bad_content_length_is_a_json_400_naming_it(address, length_headers):
    request = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               + length_headers + b"\r\n{}")
    error = assert_refused(address, request, 400, "bad_request")
    assert "content_length" in error["details"]


def test_a_huge_content_length_is_a_413_not_a_400(address):
    request = (b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + b"9" * 40 + b"\r\nConnection: close\r\n\r\n{}")
    status, _, body = exchange(address, request)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
