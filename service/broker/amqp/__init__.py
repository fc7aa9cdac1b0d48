"""The amqp backend: many nodes share the queues of one RabbitMQ (see broker.py)."""

from .broker import AmqpBroker

__all__ = ["AmqpBroker"]
