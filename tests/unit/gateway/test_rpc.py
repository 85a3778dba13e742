"""Every RPC call from the gateway ends within its timeout."""
import time

import eventlet
import pytest
from nameko.exceptions import UnknownService

from bus.errors import Conflict, Unavailable
from services.gateway.rpc import TimedServiceProxy, call


class Reply:
    def __init__(self, delay, outcome):
        self.delay, self.outcome = delay, outcome

    def result(self):
        eventlet.sleep(self.delay)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


class Method:
    """A nameko MethodProxy as the gateway uses it: call_async(...).result()."""

    def __init__(self, delay=0.0, outcome="ok", publish_error=None):
        self.delay, self.outcome, self.publish_error = delay, outcome, publish_error
        self.calls = []

    def call_async(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.publish_error:
            raise self.publish_error
        return Reply(self.delay, self.outcome)


class Service:
    def __init__(self, **methods):
        self.__dict__.update(methods)


def test_a_prompt_answer_is_returned():
    method = Method(outcome={"id": "u-1"})
    assert call(method, "users", 1, "u-1", verbose=True) == {"id": "u-1"}
    assert method.calls == [(("u-1",), {"verbose": True})]


def test_a_slow_answer_is_unavailable_after_the_timeout():
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        call(Method(delay=5), "search", 0.2)
    assert 0.2 <= time.monotonic() - started < 1
    assert caught.value.details == {"service": "search"}


def test_a_service_with_no_consumer_is_unavailable():
    with pytest.raises(Unavailable) as caught:
        call(Method(publish_error=UnknownService("events")), "events", 5)
    assert caught.value.details == {"service": "events"}


def test_errors_of_the_service_pass_through():
    with pytest.raises(Conflict):
        call(Method(outcome=Conflict("taken")), "users", 1)


def test_an_outer_timeout_is_not_mistaken_for_ours():
    outer = eventlet.Timeout(0.1)
    with pytest.raises(eventlet.Timeout) as caught:
        try:
            call(Method(delay=5), "users", 5)
        finally:
            outer.cancel()
    assert caught.value is outer


def test_the_proxy_applies_the_timeout_and_within_only_shortens_it():
    proxy = TimedServiceProxy(lambda: Service(health=Method(delay=0.5)), "mailer", 0.1)
    with pytest.raises(Unavailable):
        proxy.health()
    assert proxy.within(10)._timeout == 0.1
    assert proxy.within(0.05)._timeout == 0.05
