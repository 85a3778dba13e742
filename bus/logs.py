"""JSON logs that carry the service name and the Nameko call id.

``CallContext`` (a dependency every service declares) records both for the
running worker; ``CallContextFilter`` copies them onto each log record and
``JsonFormatter`` writes one JSON object per line. Config wires them in
config.yml's LOGGING section.
"""
import json
import logging
import threading
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider

# eventlet monkey-patches threading.local, so this is per worker greenthread.
_worker = threading.local()
_process = {"service": None}


class CallContext(DependencyProvider):
    def setup(self):
        _process["service"] = self.container.service_name

    def worker_setup(self, worker_ctx):
        _worker.call_id = worker_ctx.call_id

    def worker_teardown(self, worker_ctx):
        _worker.call_id = None


class CallContextFilter(logging.Filter):
    def filter(self, record):
        record.service = _process["service"]
        record.call_id = getattr(_worker, "call_id", None)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname,
            "service": getattr(record, "service", None),
            "call_id": getattr(record, "call_id", None),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
