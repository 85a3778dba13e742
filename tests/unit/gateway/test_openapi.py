"""/openapi.json documents exactly the routes the gateway serves, with their errors."""
import inspect
import json
import re

from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR
from werkzeug.routing import Map

from services.gateway import openapi
from services.gateway.http import HttpEntrypoint
from services.gateway.service import GatewayService

AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}
# API.md v1: 2 operations, 7 accounts, 5 events, 6 notifications (v1.1 adds more)
API_V1 = {
    ("get", "/health"), ("get", "/openapi.json"),
    ("post", "/users"), ("post", "/auth/token"), ("get", "/users/me"), ("patch", "/users/me"),
    ("post", "/users/me/emails"), ("delete", "/users/me/emails/{email}"),
    ("delete", "/users/me"),
    ("get", "/events"), ("get", "/events/{event_id}"), ("post", "/events"),
    ("patch", "/events/{event_id}"), ("delete", "/events/{event_id}"),
    ("post", "/notifications"), ("get", "/notifications"),
    ("get", "/notifications/{notification_id}"), ("patch", "/notifications/{notification_id}"),
    ("post", "/notifications/{notification_id}/snooze"),
    ("delete", "/notifications/{notification_id}"),
}


def served_routes():
    """(method, OpenAPI path) for every rule of the gateway's URL map."""
    url_map = Map()
    for _, function in inspect.getmembers(GatewayService, inspect.isfunction):
        for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, HttpEntrypoint):
                url_map.add(entrypoint.get_url_rule())
    return {
        (method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule))
        for rule in url_map.iter_rules()
        for method in rule.methods - AUTOMATIC_METHODS
    }


def documented_routes(document):
    return {(method, path) for path, item in document["paths"].items()
            for method in item if method != "parameters"}


def test_every_served_route_is_documented_and_nothing_else():
    routes = served_routes()
    assert API_V1 <= routes
    assert documented_routes(openapi.document()) == routes


def test_the_document_is_json_and_openapi_3():
    document = json.loads(json.dumps(openapi.document()))
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield method, path, operation


def test_every_operation_documents_its_errors():
    document = openapi.document()
    for method, path, operation in operations(document):
        responses = operation["responses"]
        if "web app" not in operation.get("tags", ()):  # static files: no service behind
            assert "503" in responses, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= set(responses), (method, path)
        if "security" in operation:
            assert "401" in responses, (method, path)
        for code, response in responses.items():
            if int(code) >= 400:
                name = response["$ref"].rsplit("/", 1)[1]
                schema = document["components"]["responses"][name]["content"][
                    "application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_admin_routes_document_403_and_public_ones_need_no_token():
    document = openapi.document()
    admin = {("post", "/events"), ("patch", "/events/{event_id}"),
             ("delete", "/events/{event_id}"), ("patch", "/series/{series_id}"),
             ("delete", "/series/{series_id}")}
    public = {("get", "/health"), ("get", "/openapi.json"), ("post", "/users"),
              ("post", "/auth/token"), ("get", "/events"), ("get", "/events/{event_id}"),
              ("get", "/events.ics"), ("get", "/calendar/{token}.ics"), ("get", "/"),
              ("get", "/web/{name}"), ("get", "/links/{token}"), ("post", "/links/{token}"),
              ("get", "/series/{series_id}")}
    for method, path, operation in operations(document):
        assert ("403" in operation["responses"]) == ((method, path) in admin)
        assert ("security" not in operation) == ((method, path) in public)


def test_path_parameters_are_declared():
    document = openapi.document()
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        declared = {parameter["name"] for parameter in item.get("parameters", [])}
        assert declared == names, path


def test_429_documents_retry_after_and_the_search_parameters_are_listed():
    document = openapi.document()
    assert "Retry-After" in document["components"]["responses"]["RateLimited"]["headers"]
    assert "429" in document["paths"]["/auth/token"]["post"]["responses"]
    names = {parameter["name"]
             for parameter in document["paths"]["/events"]["get"]["parameters"]}
    assert names == {"topic", "q", "from", "to", "near", "radius_km", "status", "sort",
                     "limit", "cursor", "series_id"}


def test_every_operation_documents_what_the_http_server_refuses_before_routing():
    for method, path, operation in operations(openapi.document()):
        assert {"400", "414", "431"} <= set(operation["responses"]), (method, path)


def test_every_post_takes_an_idempotency_key_and_documents_its_409_and_422():
    for method, path, operation in operations(openapi.document()):
        if method == "post":
            [header] = [p for p in operation["parameters"] if p["in"] == "header"]
            assert header["name"] == "Idempotency-Key" and not header["required"]
            assert {"409", "422"} <= set(operation["responses"]), path


def test_every_post_route_is_idempotent():
    for _, function in inspect.getmembers(GatewayService, inspect.isfunction):
        for entrypoint in getattr(function, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, HttpEntrypoint) and entrypoint.method == "POST":
                assert getattr(function, "idempotent", False), function.__name__


def test_the_statuses_the_accounts_routes_return_are_documented():
    paths = openapi.document()["paths"]
    # removing the primary email is a 422 (users: "change it instead")
    assert "422" in paths["/users/me/emails/{email}"]["delete"]["responses"]
    password = paths["/users/me/password"]["post"]["responses"]
    assert {"204", "401", "422"} <= set(password)
    assert {"401", "429"} <= set(paths["/auth/token"]["post"]["responses"])
