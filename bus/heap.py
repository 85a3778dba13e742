"""Short garbage-collector pauses in long-running service processes.

Python's cyclic collector stops the whole process while it walks every object it
tracks; a full pass over a service process (the modules, Nameko, werkzeug,
marshmallow, ...) took 30-100 ms, every few seconds under load, and with eventlet
every request in flight waits for it (the gateway's p99). Objects that live as long
as the process are moved out of its reach with ``gc.freeze()`` once they exist:
after start-up (``SettledHeap``, a dependency every service declares) and after a
read model's snapshot. What becomes garbage later is collected as before; frozen
objects are still freed when nothing refers to them.
"""
import gc

from nameko.extensions import DependencyProvider


def settle():
    """Collect what is garbage now, then exempt everything left from later passes."""
    gc.collect()
    gc.freeze()


class SettledHeap(DependencyProvider):
    def start(self):
        # every extension is set up by now: what exists lives as long as the process
        settle()
