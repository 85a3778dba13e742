"""An SMTP server for benchmarks and fault tests, as its own process (aiosmtpd).

    python -m tests.support.smtp_faults --port 2525 --log arrivals.log --control rules.json

It accepts every mail and appends ``<arrival unix time> <X-EventPost-Send-Key>`` to
the log, one line per mail (it reads only the header block: parsing whole messages
would spend the CPU the benchmark measures). Faults are scripted in the control
file, re-read whenever it changes (``SmtpFaults.script`` writes it):

- ``data_replies``: replies to give, in order, to the next DATA commands instead of
  accepting, e.g. ``["451 4.3.0 try later", "421 4.3.2 closing"]`` (a 421 also
  closes the connection, as servers that say it do);
- ``rcpt_rules``: ``{substring: reply}``: a recipient containing the substring gets
  that reply to RCPT TO, e.g. ``{"bounce": "550 5.1.1 no such mailbox"}``;
- ``refuse_connections``: how many new connections get ``421`` instead of the
  greeting.
Down for a while: stop the process and start it again on the same port.
"""
import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

KEY = re.compile(rb"^X-EventPost-Send-Key: *(\S+)", re.MULTILINE | re.IGNORECASE)


class Rules:
    def __init__(self, path):
        self.path = Path(path) if path else None
        self.seen = None
        self.data_replies, self.rcpt_rules, self.refuse = [], {}, 0

    def refresh(self):
        if self.path is None or not self.path.exists():
            return
        stamp = self.path.stat().st_mtime_ns
        if stamp == self.seen:
            return
        self.seen = stamp
        rules = json.loads(self.path.read_text() or "{}")
        self.data_replies = list(rules.get("data_replies", []))
        self.rcpt_rules = dict(rules.get("rcpt_rules", {}))
        self.refuse = int(rules.get("refuse_connections", 0))


class Handler:
    def __init__(self, log_path, rules):
        self.log = open(log_path, "a", buffering=1)
        self.rules = rules

    def note(self, line):
        self.log.write(line + "\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rules.refresh()
        for needle, reply in self.rules.rcpt_rules.items():
            if needle in address:
                self.note(f"{time.time():.6f} - rcpt {address} {reply.split()[0]}")
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        arrived = time.time()
        head = envelope.original_content.split(b"\r\n\r\n", 1)[0]
        found = KEY.search(head)
        key = found.group(1).decode() if found else "-"
        self.rules.refresh()
        if self.rules.data_replies:
            reply = self.rules.data_replies.pop(0)
            self.note(f"{arrived:.6f} - data {key} {reply.split()[0]}")
            if reply.startswith("421"):
                asyncio.get_running_loop().call_soon(server.transport.close)
            return reply
        self.note(f"{arrived:.6f} {key}")
        return "250 OK"


class FaultySMTP(SMTP):
    async def _handle_client(self):
        rules = self.event_handler.rules
        rules.refresh()
        if rules.refuse > 0:
            rules.refuse -= 1
            await self.push("421 4.3.2 too busy, try later")
            self.transport.close()
            return
        await super()._handle_client()


async def serve(host, port, log_path, control):
    handler = Handler(log_path, Rules(control))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: FaultySMTP(handler, hostname="smtp-faults", data_size_limit=10 * 1024 * 1024),
        host=host, port=port)
    await stop.wait()
    server.close()
    await server.wait_closed()


class SmtpFaults:
    """The server as a child process of a test or benchmark."""

    def __init__(self, directory, port):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.log_path = self.directory / "arrivals.log"
        self.control = self.directory / "rules.json"
        self.process = None

    def start(self, timeout=20):
        import socket
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.smtp_faults", "--port", str(self.port),
             "--log", str(self.log_path), "--control", str(self.control)],
            cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL,
            stderr=open(self.directory / "smtp.log", "ab"), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the SMTP server did not listen on {self.port}")

    def stop(self, timeout=10):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def script(self, **rules):
        temporary = self.control.with_suffix(".tmp")
        temporary.write_text(json.dumps(rules))
        os.replace(temporary, self.control)

    def arrivals(self):
        """[(arrival time, send key)] of the accepted mails so far."""
        if not self.log_path.exists():
            return []
        found = []
        for line in self.log_path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                found.append((float(parts[0]), parts[1]))
        return found

    def refusals(self):
        if not self.log_path.exists():
            return []
        return [line.split()[2:] for line in self.log_path.read_text().splitlines()
                if len(line.split()) > 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--control", default=None)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.log, args.control))


if __name__ == "__main__":
    main()
