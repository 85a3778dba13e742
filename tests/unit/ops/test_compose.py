"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

Parses the compose file (PyYAML resolves its anchors and merge keys as Compose
does) and checks what breaks a deployment silently: a service without a container,
a setting from API.md's configuration table missing where it is read, a host name
that is not a compose service, unpinned images, ports published beyond loopback.
"""
import re
from urllib.parse import urlsplit

import pytest
import yaml

from bus.config import PROJECT_ROOT
from tools.system import available_services

# API.md, "Configuration": the variables every service understands.
API_SETTINGS = ["WEB_SERVER_ADDRESS", "AMQP_URI", "MONGO_URI", "SMTP_HOST", "SMTP_PORT",
                "CONSUL_HTTP_ADDR", "JWT_SECRET"]
# Where each is needed in a deployment (WEB_SERVER_ADDRESS: only the gateway binds).
EVERY_SERVICE = ["AMQP_URI", "MONGO_URI", "SMTP_HOST", "SMTP_PORT", "CONSUL_HTTP_ADDR",
                 "JWT_SECRET"]
INFRASTRUCTURE = {"rabbitmq", "mongo", "consul", "mailhog"}


@pytest.fixture(scope="module")
def compose():
    with open(PROJECT_ROOT / "docker-compose.yml") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def app_services(compose):
    return {name: s for name, s in compose["services"].items() if name not in INFRASTRUCTURE}


def environment(service):
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=value form
        env = dict(item.split("=", 1) for item in env)
    return env


def test_config_yml_reads_every_api_setting_from_the_environment():
    text = (PROJECT_ROOT / "config.yml").read_text()
    for name in API_SETTINGS:
        assert re.search(rf"^{name}: \$\{{{name}:", text, re.M), name


def test_every_service_has_its_container(app_services):
    expected = set(available_services()) | {"users", "events", "search", "notifications",
                                            "mailer", "alerts", "gateway"}
    assert set(app_services) == expected
    for name, service in app_services.items():
        assert environment(service)["SERVICE"] == name
        assert (PROJECT_ROOT / "services" / name).is_dir()


def test_one_image_for_all_services(app_services):
    assert {s["image"] for s in app_services.values()} == {"eventpost:latest"}
    assert all(s["build"] == "." for s in app_services.values())


def test_settings_are_set_where_needed(compose, app_services):
    for name, service in app_services.items():
        env = environment(service)
        missing = [key for key in EVERY_SERVICE if not str(env.get(key, ""))]
        assert not missing, f"{name} lacks {missing}"
    assert environment(app_services["gateway"])["WEB_SERVER_ADDRESS"].endswith(":8000")


def test_settings_point_at_compose_services(compose, app_services):
    env = environment(app_services["users"])
    hosts = {
        urlsplit(env["AMQP_URI"]).hostname,
        urlsplit(env["MONGO_URI"]).hostname,
        env["SMTP_HOST"],
        env["CONSUL_HTTP_ADDR"].rpartition(":")[0],
    }
    assert hosts <= set(compose["services"]), hosts
    assert env["JWT_SECRET"].startswith("${JWT_SECRET:?"), "no default secret in production"


def test_images_are_pinned_and_sane(compose):
    images = {name: s["image"] for name, s in compose["services"].items()
              if name in INFRASTRUCTURE}
    assert images["rabbitmq"].startswith("rabbitmq:3") and "management" in images["rabbitmq"]
    assert images["mongo"].startswith("mongo:7")
    for image in images.values():
        assert ":" in image and not image.endswith(":latest"), image


def test_ports_publish_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    assert "127.0.0.1:8000:8000" in compose["services"]["gateway"]["ports"]


def test_every_container_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), name


def test_start_order(compose, app_services):
    for name, service in app_services.items():
        depends = service["depends_on"]
        for infra in ("rabbitmq", "mongo", "consul"):
            assert depends[infra]["condition"] == "service_healthy", (name, infra)
    gateway = app_services["gateway"]["depends_on"]
    assert {n for n in app_services if n != "gateway"} <= set(gateway)
    assert "mailhog" in app_services["mailer"]["depends_on"]


def test_rpc_healthchecks_name_their_own_service(app_services):
    for name, service in app_services.items():
        if name != "gateway":
            assert service["healthcheck"]["test"][-1] == name


def test_dockerfile_runs_one_service_without_extras():
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    installs = re.findall(r"pip install ([^\n\\&]+)", text)
    assert installs and all("[" not in i for i in installs), installs  # no extras
    cmd = [line for line in text.splitlines() if line.startswith("CMD")][-1]
    assert "nameko run --config config.yml services.$SERVICE.service" in cmd
    assert "exec " in cmd  # nameko is PID 1 and gets docker's SIGTERM
