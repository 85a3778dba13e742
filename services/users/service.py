"""The users service: accounts, credentials and access tokens (docs/contracts.md).

A thin Nameko class: each RPC runs a handler, then publishes the messages the
handler stored with its write (the outbox sweeper catches any that a crash leaves).
"""
from nameko.dependency_providers import Config
from nameko.rpc import rpc

import bus.reliable  # noqa: F401  nameko 2.14 fixes: a broker restart must not end the service
from bus.consul import ConsulRegistration
from bus.heap import SettledHeap
from bus.logs import CallContext
from bus.mongo import Mongo, database_health
from bus.outbox import Outbox
from services.users import handlers, storage


class UsersService:
    name = "users"

    db = Mongo(prepare=storage.ensure_indexes)
    health = database_health
    outbox = Outbox([storage.USERS])
    config = Config()
    context = CallContext()
    heap = SettledHeap()
    consul = ConsulRegistration()

    @rpc
    def register(self, username, email, password):
        user = handlers.register(self.db, username, email, password)
        self.outbox(storage.USERS, user["id"])
        return user

    @rpc
    def authenticate(self, password, username=None, email=None, client=None):
        return handlers.authenticate(self.db, self.config, password, username, email, client)

    @rpc
    def get(self, user_id):
        return handlers.get(self.db, user_id)

    @rpc
    def change_email(self, user_id, email):
        user = handlers.change_email(self.db, user_id, email)
        self.outbox(storage.USERS, user_id)
        return user

    @rpc
    def add_email(self, user_id, email):
        user = handlers.add_email(self.db, user_id, email)
        self.outbox(storage.USERS, user_id)
        return user

    @rpc
    def remove_email(self, user_id, email):
        user = handlers.remove_email(self.db, user_id, email)
        self.outbox(storage.USERS, user_id)
        return user

    @rpc
    def change_password(self, user_id, current_password, new_password):
        user = handlers.change_password(self.db, user_id, current_password, new_password)
        self.outbox(storage.USERS, user_id)
        return user

    @rpc
    def claim_request(self, caller, key, fingerprint):
        return handlers.claim_request(self.db, caller, key, fingerprint)

    @rpc
    def finish_request(self, caller, key, claim, response):
        handlers.finish_request(self.db, caller, key, claim, response)

    @rpc
    def release_request(self, caller, key, claim):
        handlers.release_request(self.db, caller, key, claim)

    @rpc
    def all_accounts(self, after_id=None, limit=500):
        return handlers.all_accounts(self.db, after_id, limit)

    @rpc
    def delete(self, user_id):
        handlers.delete(self.db, user_id)
        self.outbox(storage.USERS, user_id)

    @rpc
    def create_admin(self, username, email, password):
        user = handlers.create_admin(self.db, username, email, password)
        self.outbox(storage.USERS, user["id"])
        return user
