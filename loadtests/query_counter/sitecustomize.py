"""Counts every database command of the process it is loaded into (benchmarks only).

``loadtests.reminders``'s idle run puts this folder on PYTHONPATH of the service
processes it starts, with QUERY_COUNT_DIR set: Python imports ``sitecustomize`` at
start-up, and it registers a pymongo CommandListener as soon as the process itself
imports pymongo (not earlier: pymongo must come after eventlet's monkey-patching),
so before any client exists. Each command that reaches the server appends
``<unix time> <command> <database>.<collection>`` to ``<QUERY_COUNT_DIR>/<pid>.log``.
Nothing in services/ knows about it.
"""
import os
import sys

if os.environ.get("QUERY_COUNT_DIR"):
    import importlib.abc
    import importlib.machinery
    import time

    def _register():
        from pymongo import monitoring

        class Counter(monitoring.CommandListener):
            path = os.path.join(os.environ["QUERY_COUNT_DIR"], f"{os.getpid()}.log")

            def started(self, event):
                target = event.command.get(event.command_name)
                target = target if isinstance(target, str) else "-"  # a collection, mostly
                with open(self.path, "a") as log:
                    log.write(f"{time.time():.3f} {event.command_name} "
                              f"{event.database_name}.{target}\n")

            def succeeded(self, event):
                pass

            def failed(self, event):
                pass

        monitoring.register(Counter())

    class _AfterPymongo(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "pymongo":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None:
                return None
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _register()

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterPymongo())
