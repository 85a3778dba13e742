"""The database client's settings (bus/mongo.py). No server: a client connects lazily."""
from bus.mongo import connect

NOWHERE = "mongodb://127.0.0.1:9/"


def _options(**config):
    client, _ = connect({"MONGO_URI": NOWHERE, **config}, "events")
    try:
        return client.options
    finally:
        client.close()


def test_writes_wait_for_the_journal_and_are_not_retryable_unless_configured():
    options = _options()
    assert options.write_concern.document == {"j": True}
    assert options.retry_writes is False


def test_each_setting_can_be_turned_the_other_way():
    options = _options(MONGO_JOURNAL="false", MONGO_RETRY_WRITES="true")
    assert options.write_concern.document == {"j": False}
    assert options.retry_writes is True
