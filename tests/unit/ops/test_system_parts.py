"""tools.system pieces that need no broker: the dev JWT secret, service discovery."""
import stat

from tools.system import SERVICE_ORDER, System, available_services, jwt_secret


def test_jwt_secret_is_generated_once_and_private(tmp_path):
    first = jwt_secret(tmp_path)
    assert len(first) >= 32
    assert jwt_secret(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode)
    assert mode == 0o600


def test_only_existing_services_start_and_the_gateway_last(tmp_path):
    for name in ["gateway", "users", "mailer", "extra"]:
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "service.py").write_text("")
    (tmp_path / "services" / "events").mkdir()  # still being written: no service.py
    assert available_services(tmp_path) == ["users", "mailer", "extra", "gateway"]


def test_project_services_are_the_known_ones():
    assert set(available_services()) <= set(SERVICE_ORDER)


def test_settings_prefer_extra_env_and_treat_empty_as_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://db.example:27017/")
    monkeypatch.setenv("SMTP_HOST", "smtp.example")
    system = System(var_dir=tmp_path, env={"SMTP_HOST": "", "WEB_SERVER_ADDRESS": "127.0.0.1:9"})
    assert not system.embedded_mongo
    assert system.embedded_smtp  # empty in the extra env: the local sink
    assert system.base_url == "http://127.0.0.1:9"
