"""RPC from the gateway, always under a timeout.

Nameko's in-service ``RpcProxy`` waits forever for a reply. The gateway must answer
every HTTP request, so each call here waits at most ``RPC_TIMEOUT`` seconds and a
service that is slow, stuck or not running at all becomes ``Unavailable`` (503).
Typed errors the service raised (bus.errors) pass through unchanged.

Requests are published without a broker confirm and not persisted: a request lost
with a broker crash is covered by the timeout (503) and the client's retry, and
waiting for a confirm on every call doubles its cost. What must survive a crash, a
command's event, is published by the service's outbox, confirmed and persistent.
A call to a service with no consumer at all is a 503 too, after the timeout.
"""
import warnings

import eventlet
from nameko.constants import NON_PERSISTENT
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy

from bus.config import setting
from bus.errors import Unavailable

DEFAULT_TIMEOUT = 5.0
# nameko asks for mandatory delivery on every call and warns that, without confirms,
# an unroutable one goes unnoticed: here the timeout notices it.
warnings.filterwarnings("ignore", message="Mandatory delivery was requested")


def unavailable(service):
    return Unavailable(f"The {service} service did not answer in time.", {"service": service})


def call(method_proxy, service, timeout, *args, **kwargs):
    """Call ``method_proxy`` and wait for its reply for at most ``timeout`` seconds."""
    timer = eventlet.Timeout(timeout)
    try:
        # publishing is inside the timer too: a broker that stalls must not hang us
        return method_proxy.call_async(*args, **kwargs).result()
    except eventlet.Timeout as expired:
        if expired is not timer:  # someone else's timer: not ours to handle
            raise
        raise unavailable(service) from None
    except UnknownService:  # no consumer on the queue: nothing will ever answer
        raise unavailable(service) from None
    finally:
        timer.cancel()


class TimedServiceProxy:
    """``proxy.method(*args)`` calls ``service.method`` with the timeout applied.

    nameko's proxy is made on first use: most requests (cached reads) never call."""

    def __init__(self, make_proxy, service, timeout):
        self._make_proxy = make_proxy
        self._proxy = None
        self._service = service
        self._timeout = timeout

    def __getattr__(self, method):
        if self._proxy is None:
            self._proxy = self._make_proxy()
        method_proxy = getattr(self._proxy, method)

        def timed(*args, **kwargs):
            return call(method_proxy, self._service, self._timeout, *args, **kwargs)

        return timed

    def within(self, seconds):
        """The same proxy with a shorter timeout (health checks)."""
        return TimedServiceProxy(self._make_proxy, self._service, min(seconds, self._timeout))


class TimedRpcProxy(RpcProxy):
    """An ``RpcProxy`` whose calls give up after ``RPC_TIMEOUT`` seconds (config)."""

    def __init__(self, target_service, **options):
        options.setdefault("use_confirms", False)
        options.setdefault("delivery_mode", NON_PERSISTENT)
        super().__init__(target_service, **options)

    def setup(self):
        super().setup()
        self.timeout = float(setting(self.container.config, "RPC_TIMEOUT", DEFAULT_TIMEOUT))

    def get_dependency(self, worker_ctx):
        return TimedServiceProxy(
            lambda: super(TimedRpcProxy, self).get_dependency(worker_ctx), self.target_service,
            self.timeout,
        )
