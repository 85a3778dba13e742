"""bus.messages.SUBSCRIPTIONS and the services' handlers agree both ways.

Publishers declare a durable queue for every listed subscription at start-up; a
listed subscription without a handler would be a queue that fills forever.
"""
import importlib

import pytest
from nameko.events import EventHandler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from bus.messages import SUBSCRIPTIONS
from bus.reliable import ReliableEventHandler

CONSUMERS = sorted({c for consumers in SUBSCRIPTIONS.values() for c in consumers})


def handled_events(service_cls):
    """(source, event type) of every event handler of the service, all via subscribe."""
    handled = set()
    for attribute in vars(service_cls).values():
        for entrypoint in getattr(attribute, ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if isinstance(entrypoint, EventHandler):
                assert isinstance(entrypoint, ReliableEventHandler), "use bus.reliable.subscribe"
                handled.add((entrypoint.source_service, entrypoint.event_type))
    return handled


def service_class(name):
    module = importlib.import_module(f"services.{name}.service")
    return next(v for v in vars(module).values()
                if isinstance(v, type) and getattr(v, "name", None) == name)


@pytest.mark.parametrize("consumer", CONSUMERS)
def test_each_listed_subscription_has_its_handler(consumer):
    listed = {key for key, consumers in SUBSCRIPTIONS.items() if consumer in consumers}
    assert handled_events(service_class(consumer)) == listed
