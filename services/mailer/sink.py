"""The local mail sink: an SMTP server that keeps every message as an ``.eml`` file.

``invoke run`` starts it when SMTP_HOST is unset, so a development machine sends
real SMTP and a person (or an e2e test) reads what went out under ``var/mail/``::

    python -m services.mailer.sink --host 127.0.0.1 --port 1025 --dir var/mail

Each message is written to a temporary file and renamed into place, so a reader
never sees half a message. Names start with the arrival time in nanoseconds, so
sorting the names sorts the messages by arrival. ``X-MailFrom`` and ``X-RcptTo``
headers are prepended with the SMTP envelope, like aiosmtpd's Message handler,
because Bcc and the envelope recipients are not in the message itself.
"""
import argparse
import asyncio
import itertools
import logging
import os
import signal
import sys
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

log = logging.getLogger("mail-sink")

SUFFIX = ".eml"


class MaildirSink:
    """aiosmtpd handler: one atomically written ``.eml`` file per accepted message."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()

    def _name(self):
        # time first (sortable), then pid and a counter so two sinks sharing a
        # directory, or two messages in one nanosecond, never collide
        return f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):06d}{SUFFIX}"

    def write(self, mail_from, rcpt_tos, content):
        envelope = (
            f"X-MailFrom: {mail_from}\r\nX-RcptTo: {', '.join(rcpt_tos)}\r\n"
        ).encode("utf-8")
        name = self._name()
        temporary = self.directory / f".{name}.tmp"  # no .eml suffix: readers skip it
        with open(temporary, "wb") as f:
            f.write(envelope + content)
            f.flush()
            os.fsync(f.fileno())
        final = self.directory / name
        os.replace(temporary, final)
        return final

    async def handle_DATA(self, server, session, envelope):
        try:
            path = self.write(envelope.mail_from, envelope.rcpt_tos, envelope.original_content)
        except OSError:
            log.exception("could not store a message")
            return "451 Requested action aborted: local error in processing"
        log.info("stored %s from %s to %s", path.name, envelope.mail_from,
                 ",".join(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


async def serve(host, port, directory, ready=None):
    """Serve until SIGTERM or SIGINT, then close the listener and return."""
    loop = asyncio.get_running_loop()
    handler = MaildirSink(directory)
    # before listening: whoever saw the port open may send SIGTERM at once
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="eventpost-sink", enable_SMTPUTF8=True,
                     data_size_limit=10 * 1024 * 1024),
        host=host, port=port,
    )
    log.info("mail sink listening on %s:%d, writing to %s", host, port, handler.directory)
    if ready is not None:
        ready()
    await stop.wait()
    server.close()
    await server.wait_closed()
    log.info("mail sink stopped")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", default="var/mail")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every SMTP verb
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
