"""The pipelined Kafka command intake against a real broker (tansu): several fetched batches in flight, and
still each world's commands applied in log order, replies before offset commits, and a transient refusal
redelivered without anything of that world overtaking it or any record being skipped.

The worlds are a fake behind ``call_many`` (what the edge offers the intake): it applies a world's commands
of one call in order, remembers outcomes by ``command_id`` as the real worlds do, and, like a world writing
its share in one transaction, refuses the rest of its share once one command was refused transiently.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from actors.bridge import Reply, error_reply
from tests.kafka_broker import kafka_brokers_fixture, unique_topic  # noqa: F401
from tests.test_kafka_transport import DEADLINE_S, GROUP_OPTIONS, run, running
from transport.kafka import KafkaConsumerLoop, KafkaPublisher
from transport.kafka_intake import CommandIntake

WORLDS = ("w1", "w2", "w3")
PER_WORLD = 12


def _command(world_id: str, seq: int) -> bytes:
    return msgspec.json.encode({"kind": "put_activation", "world_id": world_id, "command_id": f"{world_id}-{seq}",
                                "body": {"strategy_id": "s", "side": "long", "active": True, "weight": seq / 100}})


class FakeWorlds:
    """Applies commands, holds every call until ``hold_batches`` batches are in flight, and refuses the
    commands named in ``refuse_once`` transiently the first time they arrive (with the rest of that call's
    share of their world)."""

    def __init__(self, hold_batches: int = 1, refuse_once: frozenset[str] = frozenset()) -> None:
        self.applied: dict[str, list[int]] = collections.defaultdict(list)
        self.outcomes: dict[str, Reply] = {}
        self.pending_refusals = set(refuse_once)
        self.handled = 0
        self.batches_in_flight = self.most_batches_in_flight = 0
        self._hold_batches = hold_batches
        self._released = asyncio.Event()

    def batch_started(self) -> None:
        self.handled += 1
        self.batches_in_flight += 1
        self.most_batches_in_flight = max(self.most_batches_in_flight, self.batches_in_flight)
        if self.handled >= self._hold_batches:
            self._released.set()

    async def call_many(self, commands: Sequence[Any]) -> list[Reply]:
        await self._released.wait()
        replies, refused = [], False
        for command in commands:
            if command.command_id in self.pending_refusals:
                self.pending_refusals.discard(command.command_id)
                refused = True
            replies.append(error_reply(503, "storage down") if refused else self._apply(command))
        return replies

    def _apply(self, command: Any) -> Reply:
        if command.command_id not in self.outcomes:
            self.applied[command.world_id].append(int(command.command_id.rsplit("-", 1)[1]))
            self.outcomes[command.command_id] = Reply(status=200, body={"seq": command.command_id})
        return self.outcomes[command.command_id]


class RecordingLoop(KafkaConsumerLoop):
    """Remembers every offset commit, in order, with the replies already sent at that moment."""

    def __init__(self, *args: Any, sent: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commits: list[tuple[dict[int, int], int]] = []
        self._sent = sent

    async def _commit(self, offsets: Any) -> None:
        self.commits.append(({tp.partition: offset for tp, offset in offsets.items()}, len(self._sent)))
        await super()._commit(offsets)


class SentLog:
    """The intake's sender: the real publisher, plus the record of what it was asked to send."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self.publisher = publisher
        self.sent: list[str] = []

    async def send_raw_many(self, messages: Any) -> None:
        await self.publisher.send_raw_many(messages)
        self.sent += [msgspec.json.decode(value)["correlation_id"] for _, _, value, _ in messages]


async def _scenario(brokers: str, worlds: FakeWorlds) -> tuple[RecordingLoop, list[dict[str, Any]], SentLog]:
    topic, group, replies = unique_topic("cmds"), unique_topic("group"), unique_topic("replies")
    loop = asyncio.get_running_loop()
    publisher = await running(KafkaPublisher([brokers], loop, send_timeout_s=10))
    sent = [(topic, w, _command(w, seq), {"reply_to": replies, "correlation_id": f"{w}-{seq}"})
            for seq in range(PER_WORLD) for w in WORLDS]
    await publisher.send_raw_many(sent)  # all on the topic before the intake starts: full batches
    sender = SentLog(publisher)
    intake = CommandIntake(call=None, call_many=worlds.call_many, sender=sender,  # type: ignore[arg-type]
                           dlq_topic=unique_topic("dlq"))

    async def handle(records: Any) -> None:
        worlds.batch_started()
        try:
            await intake.handle(records)
        finally:
            worlds.batches_in_flight -= 1

    consumer = RecordingLoop([brokers], topic, group, handle, loop, max_records=4, max_in_flight=4,
                             backoff_s=0.1, on_rewind=intake.rewound, sent=sender.sent, **GROUP_OPTIONS)
    await consumer.start()
    try:
        answered = await _replies(brokers, replies, {headers["correlation_id"] for *_, headers in sent})
    finally:
        await consumer.stop()
        await publisher.stop()
    return consumer, answered, sender


async def _replies(brokers: str, topic: str, expected: set[str]) -> list[dict[str, Any]]:
    """Every reply on ``topic`` until each expected correlation id was answered (duplicates included)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=brokers, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not expected <= {r["correlation_id"] for r in got if r["status"] == 200}:
                batch = await consumer.getmany(timeout_ms=200)
                got.extend(msgspec.json.decode(r.value) for part in batch.values() for r in part)
    finally:
        await consumer.stop()
    return got


def _first_seen(answered: list[dict[str, Any]], world_id: str) -> list[int]:
    ids = [r["correlation_id"] for r in answered if r["world_id"] == world_id and r["status"] == 200]
    return [int(i.rsplit("-", 1)[1]) for i in dict.fromkeys(ids)]


def test_pipelined_batches_apply_and_answer_each_world_in_log_order(kafka_brokers: str) -> None:
    worlds = FakeWorlds(hold_batches=4)  # nothing is answered until four batches (the most in flight) are

    async def scenario() -> None:
        consumer, answered, _ = await _scenario(kafka_brokers, worlds)
        assert worlds.most_batches_in_flight == 4, "the next batches were handed out before the first was done"
        for world_id in WORLDS:
            assert worlds.applied[world_id] == list(range(PER_WORLD))
            assert _first_seen(answered, world_id) == list(range(PER_WORLD)), "replies in command order"
        assert {r["status"] for r in answered} == {200}

    run(scenario)


def test_offsets_are_committed_in_order_and_only_after_their_replies(kafka_brokers: str) -> None:
    worlds = FakeWorlds(hold_batches=4)

    async def scenario() -> None:
        consumer, answered, sender = await _scenario(kafka_brokers, worlds)
        assert consumer.commits, "the batches were committed"
        committed: dict[int, int] = {}
        for offsets, replies_sent in consumer.commits:
            for partition, offset in offsets.items():
                assert offset > committed.get(partition, -1), "commits move forward, in fetch order"
                committed[partition] = offset
            # Every record below a committed offset has had its reply sent before the commit.
            assert replies_sent >= sum(committed.values())
        assert sum(committed.values()) == len(WORLDS) * PER_WORLD, "nothing left uncommitted"

    run(scenario)


def test_a_transient_refusal_in_a_pipelined_batch_is_redelivered_and_nothing_overtakes_it(
        kafka_brokers: str) -> None:
    worlds = FakeWorlds(hold_batches=4, refuse_once=frozenset({"w2-5"}))

    async def scenario() -> None:
        consumer, answered, _ = await _scenario(kafka_brokers, worlds)
        assert not worlds.pending_refusals, "the refusal happened"
        for world_id in WORLDS:
            # Applied exactly once each, in log order: w2-6 and later waited for w2-5's redelivery.
            assert worlds.applied[world_id] == list(range(PER_WORLD)), world_id
            assert sorted(set(_first_seen(answered, world_id))) == list(range(PER_WORLD)), "none skipped"
        assert [r for r in answered if r["correlation_id"] == "w2-5"][0]["status"] == 200

    run(scenario)
