"""The link floor: a party with too few linked records per cluster trains alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from clients.app import handle_train
from otm_flower import protocol as P
from otm_flower.config import ConfigError, parse_run_config
from otm_flower.link_floor import below_link_floor, discovered_share, estimated_links
from otm_flower.presets import preset_keys

from .test_client import CONFIG, context, train_message

#: Handwritten agent 3 (1600 training rows, 10 clusters), 64 codes per upload:
#: after one round a confirmed link stands for 1600 / 64 = 25 linked records,
#: against a floor of 2 x 10 = 20.
ANCHORED = parse_run_config(
    {**CONFIG.to_dict(), "anchor-rate": 0.05, "min-links-per-cluster": 2.0}
)


def test_discovered_share_compounds_the_upload_share_over_rounds() -> None:
    assert discovered_share(0.25, 0) == 0.0
    assert discovered_share(0.25, 1) == 0.25
    assert discovered_share(0.25, 2) == pytest.approx(1 - 0.75**2)
    assert discovered_share(1.0, 1) == 1.0
    with pytest.raises(ValueError, match="upload share"):
        discovered_share(1.5, 1)
    with pytest.raises(ValueError, match="rounds"):
        discovered_share(0.5, -1)


def test_estimate_scales_the_confirmed_links_up_by_what_was_drawn() -> None:
    assert estimated_links(5, 0.25, 1) == 20.0
    assert estimated_links(5, 1.0, 3) == 5.0
    assert math.isinf(estimated_links(0, 0.25, 0))  # nothing drawn: nothing known


@pytest.mark.parametrize(
    ("confirmed", "rounds", "per_cluster", "below"),
    [
        (4, 1, 2.0, True),  # estimate 16 < floor 20
        (5, 1, 2.0, False),  # 20: at the floor is enough
        (0, 0, 2.0, False),  # no upload yet
        (0, 3, 0.0, False),  # floor off
    ],
)
def test_below_link_floor(confirmed: int, rounds: int, per_cluster: float, below: bool):
    assert below_link_floor(confirmed, 0.25, rounds, 10, per_cluster) is below


def test_the_validated_anchored_preset_sets_the_floor_and_the_paper_does_not() -> None:
    assert preset_keys("otm", "clustering", True)["min-links-per-cluster"] == 2.0
    assert "min-links-per-cluster" not in preset_keys("otm", "clustering", False)
    paper = parse_run_config({"preset": "paper", "anchor-rate": 0.05})
    assert paper.min_links_per_cluster == 0.0
    with pytest.raises(ConfigError, match="min-links-per-cluster"):
        parse_run_config({"min-links-per-cluster": -1.0})


def _second_round(config, *, mixed: bool, linked: list[int] | None):
    ctx = context()
    first = handle_train(train_message(1), ctx, config)
    codes = first.content.array_records[P.CODES_RECORD][P.KEY_CODES].numpy()
    message = train_message(2, mixed=codes[::-1].copy() if mixed else None)
    if linked is not None:
        message.content[P.LINKS_RECORD] = ArrayRecord(
            {P.KEY_LINKED: Array(np.array(linked, np.int64))}
        )
    reply = handle_train(message, ctx, config)
    state = bytes(ctx.state.config_records["otm-agent"]["trainer"])
    return reply.content.metric_records[P.METRICS_RECORD], state


def test_below_the_floor_the_targets_are_ignored_and_the_party_trains_alone() -> None:
    metrics, state = _second_round(ANCHORED, mixed=True, linked=None)
    assert metrics["train-" + P.KEY_LINK_FLOOR] == 1.0
    assert "train-mix" not in metrics
    _, alone = _second_round(ANCHORED, mixed=False, linked=None)
    assert state == alone  # step for step the round without targets


def test_enough_confirmed_links_keep_the_targets() -> None:
    metrics, _ = _second_round(ANCHORED, mixed=True, linked=[123])  # estimate 25
    assert metrics["train-" + P.KEY_LINK_FLOOR] == 0.0
    assert "train-mix" in metrics


def test_without_link_feedback_the_floor_does_not_judge() -> None:
    blind = parse_run_config({**ANCHORED.to_dict(), "link-feedback": False})
    metrics, _ = _second_round(blind, mixed=True, linked=None)
    assert "train-" + P.KEY_LINK_FLOOR not in metrics
    assert "train-mix" in metrics
