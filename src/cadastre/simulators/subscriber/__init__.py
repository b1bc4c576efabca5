"""A platform service that subscribes to Cadastre's outbound webhooks: it records each delivery,
verifies its signature itself and answers as it is told (2xx, 500, 302, 410, 429 with
``Retry-After``, or a hang on its clock)."""

from cadastre.simulators.subscriber.app import Received, Reply, SubscriberSimulator

__all__ = ["Received", "Reply", "SubscriberSimulator"]
