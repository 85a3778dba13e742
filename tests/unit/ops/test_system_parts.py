"""tools.system pieces that need no broker: the dev JWT secret, service discovery."""
import stat

from tests.support.waiting import wait_for
from tools.system import SERVICE_ORDER, System, available_services, jwt_secret, live_group_members


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


def _gone(pid):
    from tools.system import live_group_members

    return live_group_members(pid) == []


def test_stop_kills_what_ignores_sigterm_and_its_whole_group(tmp_path):
    import sys
    import time

    from tools.system import Child

    system = System(var_dir=tmp_path, echo=lambda message: None)
    system.log_dir.mkdir(parents=True)
    # ignores SIGTERM, and leaves a grandchild in its process group
    stubborn = ("import signal, subprocess, sys, time; "
                "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
                "time.sleep(60)")
    polite = "import time; time.sleep(60)"
    for name, code in [("stubborn", stubborn), ("polite", polite)]:
        system._spawn(Child(name, [sys.executable, "-c", code], system.log_dir / f"{name}.log"),
                      {})
    pids = [c.process.pid for c in system.children]
    # the grandchild exists once the stubborn one ignores SIGTERM and has spawned it
    assert wait_for(lambda: len(live_group_members(pids[0])) == 2, timeout=10)
    began = time.monotonic()
    system.stop(timeout=3)
    assert time.monotonic() - began < 3.5
    assert all(_gone(pid) for pid in pids)
