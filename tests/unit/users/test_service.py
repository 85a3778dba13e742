"""The service class around the handlers, with nameko's worker_factory and a real database."""
from nameko.testing.services import worker_factory

from services.users.service import UsersService


def test_a_failed_publish_does_not_fail_a_stored_registration(db, config):
    def broker_down(collection, user_id):
        raise ConnectionError("broker unreachable")

    service = worker_factory(UsersService, db=db, config=config, outbox=broker_down)
    user = service.register("ann", "ann@example.org", "correct horse battery")

    assert service.get(user["id"]) == user
    # still in the outbox, where the sweeper of any running instance will publish it
    [message] = db.users.find_one({"_id": user["id"]})["pending_events"]
    assert message["event_type"] == "user_registered"

