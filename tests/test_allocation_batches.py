"""Allocation runs queued together are served as one batch: runs over disjoint worlds share one commit,
a run that overlaps an earlier one waits for it (arrival order), every caller gets its own answer, and a
refused run (a replayed run id with other content: 409) refuses no other run."""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from actors.bridge import Reply, Request
from domain.rebalancing import allocation_waves
from messages.commands import UpsertAllocations
from messages.rebalancing import AllocationUpsertRequest
from tests.conftest import make_config


def _upsert(run_id: str, allocations: dict[str, float]) -> UpsertAllocations:
    body = {"run_id": run_id, "total_equity": 1000, "world_allocations": allocations,
            "positions": [{"world_id": w, "strategy_id": "s1", "symbol": "BTC", "qty": 1.0, "mark": 100,
                           "venue": "x"} for w in allocations],
            "lot_size_by_symbol": {"BTC": 0.001}}
    return UpsertAllocations(world_id=min(allocations, default=""), body=msgspec.convert(body, AllocationUpsertRequest))


class Answers:
    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self._all = threading.Condition()

    def hook(self, name: str) -> Any:
        def reply(answer: Reply) -> None:
            with self._all:
                self.replies[name] = answer
                self._all.notify_all()
        return reply

    def wait_for(self, count: int) -> dict[str, Reply]:
        with self._all:
            assert self._all.wait_for(lambda: len(self.replies) >= count, timeout=20), self.replies
        return self.replies


def test_a_batch_commits_disjoint_runs_together_and_overlapping_ones_in_order(harness_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = harness_factory(make_config(tmp_path))
    system = h.system
    answers = Answers()
    system.allocations.tell(Request(command=_upsert("old", {"w9": 0.1}), reply=answers.hook("old")))
    answers.wait_for(1)
    entered, go = threading.Event(), threading.Event()

    def blocking(reply: Reply) -> None:  # answered on the coordinator's thread: it waits here
        entered.set()
        go.wait(timeout=20)

    # The first request is refused at once (no worlds), and its answer holds the coordinator until the
    # others are queued behind it: they are served as one batch.
    system.allocations.tell(Request(command=_upsert("empty", {}), reply=blocking))
    assert entered.wait(timeout=20)
    queued = {"a": _upsert("a", {"w1": 0.1, "w2": 0.2}), "b": _upsert("b", {"w3": 0.3, "w4": 0.4}),
              "c": _upsert("c", {"w2": 0.5, "w5": 0.5}),  # overlaps a: after it
              "stale": _upsert("old", {"w6": 0.6}),  # the run id of a stored run, other content
              "d": _upsert("d", {"w7": 0.7, "w8": 0.1})}
    for name, command in queued.items():
        system.allocations.tell(Request(command=command, reply=answers.hook(name)))
    commits_before = system.writer.proxy().stats().get()["commits"]
    go.set()
    replies = answers.wait_for(1 + len(queued))

    assert {n: r.status for n, r in replies.items()} == {"old": 200, "a": 200, "b": 200, "c": 200, "stale": 409,
                                                          "d": 200}
    assert {n: replies[n].body.run_id for n in ("a", "b", "c", "d")} == {"a": "a", "b": "b", "c": "c", "d": "d"}
    # a, b and d in the first wave's commit, c in the second's: two commits for four runs.
    assert system.writer.proxy().stats().get()["commits"] - commits_before == 2
    stored = system.store.world_allocations(["w1", "w2", "w5", "w6"])
    assert stored["w2"]["run_id"] == "c" and stored["w2"]["allocation"] == 0.5  # c wrote after a
    assert stored["w1"]["run_id"] == "a" and "w6" not in stored  # the refused run wrote nothing


def test_waves_keep_overlapping_runs_in_arrival_order() -> None:
    runs = [("1", ["a", "b"]), ("2", ["c"]), ("3", ["b", "d"]), ("4", ["d"]), ("1", ["e"]), ("5", ["f"])]
    assert [[runs[i][0] for i in wave] for wave in allocation_waves(runs)] == [["1", "2", "5"], ["3", "1"], ["4"]]
