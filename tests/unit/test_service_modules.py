"""`nameko run services.<name>.service` finds exactly the one service of each module."""
from pathlib import Path

import pytest
from nameko.cli.run import import_service

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/service.py"))


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_module_holds_exactly_its_service(name):
    [service_cls] = import_service(f"services.{name}.service")
    assert service_cls.name == name


def test_every_service_is_found():
    assert SERVICES == ["alerts", "events", "gateway", "mailer", "notifications", "search",
                        "users"]
