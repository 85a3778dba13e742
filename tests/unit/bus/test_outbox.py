from unittest.mock import Mock

from bus.outbox import Outbox


def test_a_failed_publish_does_not_fail_the_command_that_stored_it():
    """The change and its message are stored; the sweeper publishes it later."""
    outbox = Outbox(["users"])
    outbox.relay = Mock(side_effect=ConnectionError("broker unreachable"))
    outbox.get_message_headers = Mock(return_value={})

    relay = outbox.get_dependency(worker_ctx=Mock())
    relay("users", "u1")  # does not raise

    outbox.relay.assert_called_once_with("users", {"_id": "u1"}, {})
