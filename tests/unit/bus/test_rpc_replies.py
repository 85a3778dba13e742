"""bus.reliable: an RPC reply on a connection the broker just dropped does not kill the
service (nameko 2.14 lets the publish error through to the container)."""
from types import SimpleNamespace

import pytest
from kombu.exceptions import OperationalError
from nameko.rpc import Responder

import bus.reliable  # noqa: F401  (patches Responder on import)


def responder(error):
    class BrokenPublisher:
        published = []

        def __init__(self, *args, **kwargs):
            pass

        def publish(self, payload, **kwargs):
            if error is not None:
                raise error
            BrokenPublisher.published.append(payload)

    message = SimpleNamespace(properties={"content_type": "application/json",
                                          "reply_to": "rpc.reply-x", "correlation_id": "c1"})
    answer = Responder("amqp://127.0.0.1:1/", "nameko-rpc", "json", message)
    answer.publisher_cls = BrokenPublisher
    return answer, BrokenPublisher


@pytest.mark.parametrize("error", [OperationalError("connection dropped"),
                                   ConnectionResetError(104, "reset by peer")])
def test_a_reply_the_broker_cannot_take_is_dropped_not_raised(error, caplog):
    answer, _ = responder(error)
    assert answer.send_response({"ok": 1}, None) == ({"ok": 1}, None)
    assert "could not send an RPC reply" in caplog.text


def test_a_reply_on_a_working_connection_is_published():
    answer, publisher = responder(None)
    assert answer.send_response("pong", None) == ("pong", None)
    assert publisher.published == [{"result": "pong", "error": None}]


def test_other_errors_still_reach_the_container():
    answer, _ = responder(RuntimeError("a bug"))
    with pytest.raises(RuntimeError):
        answer.send_response("pong", None)
