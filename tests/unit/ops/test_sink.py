"""The local mail sink as `invoke run` starts it: a real process, real SMTP."""
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage

import pytest

from bus.config import PROJECT_ROOT
from services.mailer.sink import MaildirSink
from tests.support.secantus import free_port
from tools.system import port_answers


@pytest.fixture
def sink(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.mailer.sink", "--host", "127.0.0.1",
         "--port", str(port), "--dir", str(tmp_path / "mail")],
        cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 20
    while not port_answers("127.0.0.1", port):
        assert process.poll() is None and time.monotonic() < deadline, "sink did not start"
        time.sleep(0.05)
    yield port, tmp_path / "mail", process
    if process.poll() is None:
        process.kill()
        process.wait()


def message(to, subject):
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "EventPost <noreply@eventpost.test>", to, subject
    mail.set_content("Bonjour, \u00e9v\u00e9nement \u2713")
    return mail


def test_each_message_becomes_one_eml_file_in_arrival_order(sink):
    port, directory, _ = sink
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(3):
            smtp.send_message(message("a@example.org", f"n{n}"),
                              to_addrs=["a@example.org", "bcc@example.org"])
    files = sorted(directory.glob("*.eml"))
    assert len(files) == 3
    assert not [p for p in directory.iterdir() if p.suffix != ".eml"]  # no temp files left
    texts = [p.read_bytes().decode() for p in files]
    assert [t.split("Subject: ")[1].splitlines()[0] for t in texts] == ["n0", "n1", "n2"]
    assert texts[0].startswith("X-MailFrom: noreply@eventpost.test\r\n"
                               "X-RcptTo: a@example.org, bcc@example.org\r\n")


def test_sigterm_stops_it_cleanly(sink):
    _, _, process = sink
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0
    assert "mail sink stopped" in process.stderr.read()


def test_names_are_unique_and_sortable_by_time(tmp_path):
    handler = MaildirSink(tmp_path)
    paths = [handler.write("f@x.org", ["t@x.org"], b"Subject: s\r\n\r\nbody\r\n")
             for _ in range(50)]
    assert len({p.name for p in paths}) == 50
    assert [p.name for p in paths] == sorted(p.name for p in paths)
