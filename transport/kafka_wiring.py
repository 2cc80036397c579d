"""The daemon's Kafka side: the ControlBus publisher and the consumers (Gateway ACKs, the command topic,
Risk Hub events). Imported only when ``worldservice.server.controlbus_brokers`` is set, so the embedded
default never pays for aiokafka and the consumers at start-up (about 60 ms on a 2-core machine).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from actors.system import ActorSystem
from config import Config
from transport.edge import Edge
from transport.kafka import KafkaConsumerLoop, KafkaPublisher
from transport.kafka_intake import CommandIntake, ack_handler
from transport.principals import Authenticator
from transport.risk_events import dlq_topic, risk_event_handler

log = structlog.get_logger("worldservice.daemon")


def kafka_publisher(config: Config) -> KafkaPublisher:
    bus = config.worldservice.controlbus
    return KafkaPublisher(config.server.controlbus_brokers, asyncio.get_running_loop(), bus.send_timeout_s,
                          linger_ms=bus.linger_ms)


def _consumers(config: Config, system: ActorSystem, publisher: KafkaPublisher, edge: Edge) -> list[KafkaConsumerLoop]:
    brokers, bus = config.server.controlbus_brokers, config.worldservice.controlbus
    group: dict[str, Any] = {"session_timeout_ms": bus.session_timeout_ms,
                             "heartbeat_interval_ms": bus.heartbeat_interval_ms,
                             "fetch_max_wait_ms": bus.fetch_max_wait_ms}
    consumers = [KafkaConsumerLoop(brokers, bus.ack_topic, f"{bus.group_id}.acks",
                                   ack_handler(system.receive_ack, edge.call_timeout_s, lambda: edge.draining),
                                   **group)]
    if bus.commands_enabled:
        auth = config.server.auth
        intake = CommandIntake(call=edge.call, call_many=edge.call_many, sender=publisher,
                               dlq_topic=bus.commands_dlq_topic, auth_header=auth.header,
                               authenticator=Authenticator(auth) if auth.enabled else None)
        consumers.append(KafkaConsumerLoop(brokers, bus.commands_topic, bus.group_id, intake.handle,
                                           max_records=bus.commands_max_poll_records,
                                           max_in_flight=bus.commands_in_flight, on_rewind=intake.rewound, **group))
    hub = config.worldservice.risk_hub
    if hub.consumer_enabled:
        topic = bus.topics["risk_snapshot"]
        consumers.append(KafkaConsumerLoop(brokers, topic, hub.consumer_group, risk_event_handler(
            system.receive_risk_event, publisher, dlq_topic(topic), edge.call_timeout_s), **group))
        # New evaluation runs (on the policy topic) are validated against the latest snapshot at once.
        consumers.append(KafkaConsumerLoop(brokers, bus.topics["policy"], f"{hub.consumer_group}.runs",
                                           risk_event_handler(system.receive_risk_event, publisher,
                                                              dlq_topic(topic), edge.call_timeout_s), **group))
    return consumers


async def start_consumers(config: Config, system: ActorSystem, publisher: KafkaPublisher,
                          edge: Edge) -> list[KafkaConsumerLoop]:
    """ACKs from Gateways and, when enabled, the command topic and the Risk Hub's events."""
    consumers = _consumers(config, system, publisher, edge)
    for consumer in consumers:
        await consumer.start()
    # Readiness waits (bounded) for the ACK consumer's group join, so a first apply is not held for ACKs
    # that nobody reads yet; with the broker down the daemon still becomes ready and serves commands.
    bus = config.worldservice.controlbus
    if not await consumers[0].wait_joined(bus.session_timeout_ms / 1000 * 1.5):
        log.warning("ack_consumer_not_joined", topic=bus.ack_topic)
    return consumers
