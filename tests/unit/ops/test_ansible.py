"""The Ansible playbook and its templates, checked without provisioning a host."""
import shutil
import subprocess

import pytest
import yaml

from bus.config import PROJECT_ROOT
from tests.unit.ops.test_compose import API_SETTINGS
from tools.system import available_services

ANSIBLE = PROJECT_ROOT / "ansible"
VARS = {
    "ansible_managed": "managed", "amqp_uri": "amqp://u:p@127.0.0.1:5672/",
    "mongo_uri": "mongodb://127.0.0.1:27017/", "smtp_host": "127.0.0.1", "smtp_port": 25,
    "consul_http_addr": "", "jwt_secret": "s" * 40, "eventpost_user": "eventpost",
    "eventpost_home": "/opt/eventpost", "eventpost_venv": "/opt/eventpost/venv",
    "eventpost_config_dir": "/etc/eventpost",
}


def render(name):
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return environment.from_string((ANSIBLE / "templates" / name).read_text()).render(VARS)


@pytest.fixture(scope="module")
def play():
    return yaml.safe_load((ANSIBLE / "playbook.yml").read_text())[0]


def test_playbook_runs_every_service(play):
    assert set(play["vars"]["eventpost_services"]) == set(available_services()) | {
        "users", "events", "search", "notifications", "mailer", "alerts", "gateway"}


def test_env_file_sets_every_api_setting():
    lines = dict(line.split("=", 1) for line in render("eventpost.env.j2").splitlines()
                 if line and not line.startswith("#"))
    assert set(API_SETTINGS) <= set(lines)
    assert lines["JWT_SECRET"] == "s" * 40


def test_unit_runs_nameko_for_its_instance_and_stops_within_10s():
    unit = render("eventpost@.service.j2")
    assert ("nameko run --config /etc/eventpost/config.yml services.%i.service") in unit
    assert "-m bus.consul exec --service %i --" in unit
    assert "EnvironmentFile=/etc/eventpost/eventpost.env" in unit
    assert "TimeoutStopSec=10" in unit and "KillSignal=SIGTERM" in unit


@pytest.mark.skipif(not shutil.which("ansible-playbook"), reason="ansible not installed")
def test_ansible_syntax_check():
    result = subprocess.run(
        ["ansible-playbook", "--syntax-check", "-i", "inventory.example.ini", "playbook.yml"],
        cwd=ANSIBLE, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
