"""EvalKey (spec §4-B) and execution-domain normalisation as pure functions."""

from __future__ import annotations

import json
import re

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from domain.domains import DOMAINS, normalise_domain
from domain.evalkey import eval_key, eval_key_material
from messages.errors import CommandRejected, Refusal

COMPONENTS = ("node_id", "world_id", "execution_domain", "contract_id", "dataset_fingerprint", "code_version",
              "resource_policy")
BASE = {"node_id": "node-1", "world_id": "w1", "execution_domain": "live", "contract_id": "contract-a",
        "dataset_fingerprint": "ds-2025", "code_version": "v1.2.3", "resource_policy": "cpu:2"}
# Pinned: a changed formula would silently empty every deployed cache (and disagree with stored keys).
BASE_KEY = "blake3:92a4c24943a6042727ac376cc3604c21f3efa976f5fced236583dde72fd5e06d"


def test_the_formula_is_pinned_and_has_exactly_one_prefix() -> None:
    key = eval_key(**BASE)
    assert key == BASE_KEY
    assert re.fullmatch(r"blake3:[0-9a-f]{64}", key)


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_alone_changes_the_key(component: str) -> None:
    changed = {**BASE, component: "shadow" if component == "execution_domain" else BASE[component] + "x"}
    assert eval_key(**changed) != BASE_KEY


def test_node_and_world_are_not_interchangeable() -> None:
    assert eval_key(**{**BASE, "node_id": "a", "world_id": "b"}) != eval_key(**{**BASE, "node_id": "b", "world_id": "a"})


@pytest.mark.parametrize(("alias", "domain"), [
    ("Live", "live"), ("prod", "live"), ("PROD", "live"), (" live ", "live"),
    ("paper", "dryrun"), ("dryrun", "dryrun"), ("SIM", "dryrun"), ("sandbox", "dryrun"),
    ("DEFAULT", "backtest"), ("", "backtest"), (None, "backtest"), ("validate", "backtest"),
    ("compute-only", "backtest"), ("Compute", "backtest"), ("offline", "backtest"), ("Shadow", "shadow"),
])
def test_domain_aliases_normalise_to_one_domain_and_one_key(alias: str | None, domain: str) -> None:
    assert normalise_domain(alias) == domain
    if alias is not None:
        assert eval_key(**{**BASE, "execution_domain": alias}) == eval_key(**{**BASE, "execution_domain": domain})


@pytest.mark.parametrize("bad", ["mars", "livee", "dry-run", "*", "all", "back test"])
def test_unknown_domains_are_refused_with_the_accepted_names(bad: str) -> None:
    with pytest.raises(CommandRejected) as refused:
        normalise_domain(bad)
    assert refused.value.refusal == Refusal.UNPROCESSABLE
    assert all(d in refused.value.detail for d in DOMAINS)
    with pytest.raises(CommandRejected):
        eval_key(**{**BASE, "execution_domain": bad})


# Text rich in the characters a naive join would use as separators (the reference used \x1f and \0).
_tricky = st.text(alphabet=st.sampled_from(["a", "b", "|", "\x1f", "\x00", ",", '"', "\\", "[", "]", "é", " "]),
                  max_size=6)
_tuples = st.tuples(*[_tricky] * 7)


@settings(max_examples=300, deadline=None)
@given(_tuples, _tuples)
def test_different_component_tuples_never_share_an_encoding(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    if a != b:
        assert eval_key_material(*a) != eval_key_material(*b)


@settings(max_examples=200, deadline=None)
@given(_tuples)
def test_the_encoding_decodes_back_to_its_components(components: tuple[str, ...]) -> None:
    """Decodable means injective: no two tuples can share an encoding, whatever their characters."""
    assert tuple(json.loads(eval_key_material(*components))) == components


def test_moving_a_separator_between_components_changes_the_key() -> None:
    split_one = {**BASE, "contract_id": "a|b", "dataset_fingerprint": "c"}
    split_two = {**BASE, "contract_id": "a", "dataset_fingerprint": "b|c"}
    assert eval_key(**split_one) != eval_key(**split_two)
