"""Consul: service registration with a TTL health check, and config from its KV store.

Both do nothing unless CONSUL_HTTP_ADDR is set (API.md's configuration table).

Registration: a service declares ``consul = ConsulRegistration()``. On start it
registers this instance (``PUT /v1/agent/service/register``) with a TTL check, a
managed greenthread passes the check (``PUT /v1/agent/check/pass/<id>``) every
third of the TTL, and stop deregisters it. The check passes only while the
container runs, so Consul shows an instance whose process hangs or dies as
critical, and removes it after DEREGISTER_AFTER. A Consul outage never stops a
service: registration is retried by the same greenthread.

Config overlay, like envconsul: ``python -m bus.consul exec --service users --
nameko run --config config.yml services.users.service`` reads every key under
``eventpost/users/`` (``GET /v1/kv/eventpost/users/?recurse``) and execs the
command with them as environment variables, so config.yml's ``${VAR:default}``
picks them up. Consul's values override the environment. Without
CONSUL_HTTP_ADDR it just execs the command.
"""
import argparse
import logging
import os
import re
import socket
import sys
import time
from urllib.parse import urlsplit

import consul
from nameko.extensions import DependencyProvider

from bus.config import setting

log = logging.getLogger(__name__)

KV_PREFIX = "eventpost"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def client(address, token=None, timeout=5):
    """A py-consul client for CONSUL_HTTP_ADDR (``host:port`` or ``http(s)://host:port``)."""
    parts = urlsplit(address if "//" in address else f"//{address}")
    consul_client = consul.Consul(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 8500,
        scheme=parts.scheme or "http",
        token=token or os.environ.get("CONSUL_HTTP_TOKEN") or None,
    )
    # py-consul waits 30 s by default; a heartbeat must not hang that long
    consul_client.http.connections_timeout = timeout
    return consul_client


class ConsulRegistration(DependencyProvider):
    """Registers the service instance in Consul while its container runs.

    ``address_setting`` names a config key holding ``host:port`` that the instance
    serves on (the gateway: ``WEB_SERVER_ADDRESS``), so Consul can hand it out.
    """

    DEREGISTER_AFTER = "5m"

    def __init__(self, ttl_seconds=15, address_setting=None):
        self.ttl_seconds = ttl_seconds
        self.address_setting = address_setting
        self.consul = None
        self.registered = False
        self._heartbeat = None

    def setup(self):
        address = setting(self.container.config, "CONSUL_HTTP_ADDR")
        if not address:
            return
        self.consul = client(address, setting(self.container.config, "CONSUL_HTTP_TOKEN"))
        name = self.container.service_name
        # unique per instance: two notifications processes are two Consul instances
        self.service_id = f"{name}-{socket.gethostname()}-{os.getpid()}"
        self.check_id = f"service:{self.service_id}"

    def _registration(self):
        registration = {
            "name": self.container.service_name,
            "service_id": self.service_id,
            "tags": ["eventpost", "nameko"],
            "check": {
                "CheckID": self.check_id,
                "Name": f"{self.container.service_name} heartbeat",
                "TTL": f"{self.ttl_seconds}s",
                "DeregisterCriticalServiceAfter": self.DEREGISTER_AFTER,
            },
        }
        served = setting(self.container.config, self.address_setting) \
            if self.address_setting else None
        if served:
            host, _, port = str(served).rpartition(":")
            if host not in ("", "0.0.0.0", "::"):  # a wildcard is no address to call
                registration["address"] = host
            registration["port"] = int(port)
        return registration

    def register(self):
        self.consul.agent.service.register(**self._registration())
        self.registered = True
        log.info("registered %s in Consul", self.service_id)
        self.consul.agent.check.ttl_pass(self.check_id)

    def beat(self):
        """One heartbeat: pass the TTL check, registering first when needed."""
        try:
            if not self.registered:
                self.register()
            # False (404): the agent forgot us, e.g. it restarted; register again
            elif not self.consul.agent.check.ttl_pass(self.check_id):
                self.registered = False
                self.register()
        except Exception as exc:  # Consul down: keep serving, try again next beat
            self.registered = False
            log.warning("Consul heartbeat for %s failed: %s", self.service_id, exc)

    def _beat_forever(self):
        import eventlet

        while True:
            self.beat()
            eventlet.sleep(self.ttl_seconds / 3)

    def start(self):
        if self.consul is None:
            return
        self.beat()
        self._heartbeat = self.container.spawn_managed_thread(self._beat_forever)

    def stop(self):
        if self._heartbeat is not None:
            self._heartbeat.kill()
            self._heartbeat = None
        if self.consul is not None and self.registered:
            try:
                self.consul.agent.service.deregister(self.service_id)
                log.info("deregistered %s from Consul", self.service_id)
            except Exception as exc:  # it expires by itself after DEREGISTER_AFTER
                log.warning("could not deregister %s: %s", self.service_id, exc)
            self.registered = False

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return None


def kv_environment(consul_client, service):
    """{NAME: value} from the keys directly under ``eventpost/<service>/``."""
    prefix = f"{KV_PREFIX}/{service}/"
    _, items = consul_client.kv.get(prefix, recurse=True)
    env = {}
    for item in items or []:
        name = item["Key"][len(prefix):]
        if not name or name.endswith("/"):  # the folder itself
            continue
        if not ENV_NAME.match(name):
            print(f"bus.consul: skipping {item['Key']}: not an environment variable name",
                  file=sys.stderr)
            continue
        value = item.get("Value")
        env[name] = "" if value is None else value.decode("utf-8")
    return env


def overlay(service, environ=None, wait_seconds=30.0):
    """The environment to exec with: ``environ`` plus the service's Consul KV keys."""
    environ = dict(os.environ if environ is None else environ)
    address = environ.get("CONSUL_HTTP_ADDR")
    if not address:
        return environ
    consul_client = client(address, environ.get("CONSUL_HTTP_TOKEN"))
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            values = kv_environment(consul_client, service)
            break
        except Exception as exc:  # Consul may still be starting (compose, boot)
            if time.monotonic() >= deadline:
                raise SystemExit(f"bus.consul: cannot read {KV_PREFIX}/{service}/ from "
                                 f"{address}: {exc}") from exc
            time.sleep(1)
    print(f"bus.consul: {len(values)} setting(s) from {address} {KV_PREFIX}/{service}/: "
          f"{', '.join(sorted(values)) or '-'}", file=sys.stderr)
    environ.update(values)
    return environ


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bus.consul", description=(
        "Run a command with the service's Consul KV keys as environment variables."))
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("exec", help="exec COMMAND with the KV overlay")
    run.add_argument("--service", required=True, help="reads eventpost/<service>/")
    run.add_argument("--wait", type=float, default=30.0,
                     help="seconds to retry while Consul does not answer")
    run.add_argument("argv", nargs=argparse.REMAINDER, help="-- command and arguments")
    args = parser.parse_args(argv)
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("exec needs a command after --")
    env = overlay(args.service, wait_seconds=args.wait)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
