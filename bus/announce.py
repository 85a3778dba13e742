"""Publishing ready-made envelopes (bus.messages.new_message) without an outbox.

For messages whose loss something else already covers (the reminders' lease in
the notifications service: a reminder not confirmed in time is handed over again),
so they need no stored copy. Like the Outbox it declares the durable queue of
every consumer of this service's events at start-up (bus.messages.SUBSCRIPTIONS),
because RabbitMQ drops an event published before its consumer's queue exists.
"""
from kombu import Queue
from kombu.common import maybe_declare
from nameko.amqp.publish import get_connection
from nameko.events import EventDispatcher
from nameko.standalone.events import get_event_exchange

from bus.messages import SUBSCRIPTIONS, queue_name


class Announcer(EventDispatcher):
    """``announce = Announcer()``; ``self.announce(message)`` publishes it now (a
    confirmed, persistent publish), from a worker or from any greenthread of the
    service through ``provider.publish``."""

    def setup(self):
        super().setup()
        config = self.container.config
        service = self.container.service_name
        exchange = get_event_exchange(service, config)
        with get_connection(self.amqp_uri, config.get("AMQP_SSL")) as connection:
            for (source, event_type), consumers in SUBSCRIPTIONS.items():
                if source != service:
                    continue
                for consumer in consumers:
                    queue = Queue(queue_name(source, event_type, consumer), exchange=exchange,
                                  routing_key=event_type, durable=True)
                    maybe_declare(queue, connection.channel())

    def publish(self, message, headers=None):
        self.publisher.publish(message, exchange=self.exchange,
                               routing_key=message["event_type"], extra_headers=headers or {})

    def get_dependency(self, worker_ctx):
        headers = self.get_message_headers(worker_ctx)
        return lambda message: self.publish(message, headers)
