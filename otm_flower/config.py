"""Run configuration: every key a run accepts, its default, and validation.

The keys are those of ``[tool.flwr.app.config]`` in ``pyproject.toml`` (kebab case,
as Flower's run config uses them). :func:`parse_run_config` is the single place that
turns a user's mapping into a typed :class:`RunConfig`, so unknown keys and bad
values are rejected with the same message everywhere (``flwr run``, ``otm-flower
run``, tests). It also applies the ``preset`` (:mod:`otm_flower.presets`): with
``preset = "validated"`` (the default), every key a preset governs that the user
left alone takes the validated value for the run's method, task and regime; keys
the user set are kept. A mapping that lacks some keys (``otm-flower run --set``,
a benchmark cell) names the keys the user set. A complete mapping (Flower hands
a run the whole ``[tool.flwr.app.config]`` table; a config's ``to_dict``) cannot
tell, so there a key still at its reference value (the field default) counts as
left alone: under ``flwr run``, to run a reference value where the validated one
differs, use ``preset = "paper"``. To change a parsed config, use
``dataclasses.replace`` (re-parsing its ``to_dict`` applies that rule). A
:class:`RunConfig` built directly holds exactly the values given.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .presets import preset_keys

TASKS = ("clustering", "classification")
MIX_FRAMES = ("shared", "own")
VARIANTS = ("fgw", "w", "gw")
SOLVERS = ("exact", "fast")
#: Settings a run starts from: the OTM paper's reference mix, or the validated ones.
PRESETS = ("paper", "validated")
#: Per-party preprocessing of the features (fitted on the party's training rows).
PREPROCESS_CHOICES = ("auto", "standard", "tfidf", "l2", "none")
#: How the server combines shared parameters (otm_flower.averaging.aggregate_shared).
AGGREGATIONS = ("mean", "median", "trimmed-mean", "krum")
#: What the term guard scores its two candidates with (otm_flower.term_guard).
GUARD_CRITERIA = ("objective", "held-out", "silhouette")
#: Whether the parties hold linked records (the validated preset's regime).
LINKED_RECORDS = ("auto", "yes", "no")
METHODS = (
    "otm",
    "otm-w",
    "otm-gw",
    "otm-nomix",
    "otm-fedavg",
    "otm-head",
    "fedavg",
    "local",
    "raw",
    "oracle",
)
OTM_METHODS = ("otm", "otm-w", "otm-gw", "otm-nomix", "otm-fedavg", "otm-head")
#: OTM hybrids that also average parameters; left out of benchmark defaults.
HYBRID_METHODS = ("otm-fedavg", "otm-head")
#: Methods that only make sense for one task (method -> task).
METHOD_TASK = {"otm-head": "classification"}
#: Parameter sharing modes of the OTM strategy (see ``RunConfig.shared_parameters``).
SHARING_MODES = ("none", "all", "head")
BASELINE_METHODS = ("local", "raw", "oracle")
# Ablations fix the barycenter variant; "otm" uses the barycenter-variant key.
_METHOD_VARIANT = {"otm-w": "w", "otm-gw": "gw"}
# OTM hybrids that also average parameters every round: every shared-shape layer
# (``WAE.shared_state``) or only the task head (``WAE.head_state``).
_METHOD_SHARING = {"otm-fedavg": "all", "otm-head": "head"}


#: The code width ``latent-dim = 0`` (auto) starts from: the paper's reference.
AUTO_LATENT_MIN = 10


class ConfigError(ValueError):
    """A run-config key is unknown or its value is invalid."""


def latent_width(config: RunConfig, n_clusters: int) -> int:
    """The code width a run's WAEs use for ``n_clusters`` clusters (classes).

    ``latent-dim``, or with ``latent-dim = 0`` (auto) ``max(10, n_clusters)``:
    k equally spaced clusters, the clustering term's ideal, need k - 1
    dimensions, so tasks with more than 10 classes get wider codes.
    """
    return config.latent_dim or max(AUTO_LATENT_MIN, n_clusters)


@dataclass(frozen=True)
class RunConfig:
    """Settings of one federated OTM run (see the README table for each key).

    The field defaults are the OTM paper's reference values; :func:`parse_run_config`
    applies ``preset`` on top of them.
    """

    dataset: str = "handwritten"
    method: str = "otm"
    task: str = "clustering"
    preset: str = "validated"
    n_clusters: int = 0
    preprocess: str = "auto"
    seed: int = 0
    num_server_rounds: int = 20
    local_epochs: int = 3
    batch_size: int = 128
    mix_batch_size: int = 256
    latent_dim: int = 10
    hidden_dim: int = 256
    learning_rate: float = 1e-3
    fgw_alpha: float = 0.5
    barycenter_iterations: int = 5
    barycenter_variant: str = "fgw"
    solver: str = "fast"
    mixer_device: str = "cpu"
    dirichlet_concentration: float = 0.5
    mix_frame: str = "shared"
    weight_rec: float = 1.0
    weight_mix: float = 0.1
    weight_reg: float = 0.0
    weight_mmd: float = 0.0
    weight_task: float = 1.0
    weight_cluster: float = 3.0
    term_guard: bool = False
    term_guard_margin: float = 0.02
    term_guard_criterion: str = "objective"
    unaligned_rate: float = 1.0
    agents_per_modality: int = 1
    test_fraction: float = 0.2
    validation_fraction: float = 0.0
    anchor_rate: float = 0.0
    linked_records: str = "auto"
    anchor_weight: float = 30.0
    link_feedback: bool = True
    min_links_per_cluster: float = 0.0
    label_cost_weight: float = 0.0
    min_agents: int = 2
    outlier_factor: float = 10.0
    parameter_aggregation: str = "mean"
    dp_clip: float = 0.0
    dp_noise: float = 0.0
    dp_delta: float = 1e-5
    num_agents: int = 0
    round_timeout: float = 600.0
    rejoin_timeout: float = 0.0
    fraction_train: float = 1.0
    checkpoint_dir: str = ""
    resume: bool = False
    diagnostics_dir: str = ""
    output_dir: str = "outputs"
    out: str = ""

    def __post_init__(self) -> None:
        errors = [
            msg
            for check in (
                _choice_checks,
                _range_checks,
                _combination_checks,
                _weight_checks,
            )
            for ok, msg in check(self)
            if not ok
        ]
        if errors:
            raise ConfigError("invalid run config: " + "; ".join(errors))

    @property
    def variant(self) -> str:
        """The barycenter variant the method uses (``otm-w``: w, ``otm-gw``: gw)."""
        return _METHOD_VARIANT.get(self.method, self.barycenter_variant)

    @property
    def shared_parameters(self) -> str:
        """Parameters the OTM strategy also averages every round.

        ``"all"`` (``otm-fedavg``: everything ``WAE.shared_state`` returns),
        ``"head"`` (``otm-head``: the task head only) or ``"none"`` (every other
        method; ``fedavg`` averages through Flower's own strategy instead).
        """
        return _METHOD_SHARING.get(self.method, "none")

    @property
    def linked(self) -> bool:
        """Whether the parties hold linked records (the ``anchored`` regime):
        ``linked-records = "yes"`` (parties linked by record keys), or
        ``"auto"`` with ``anchor-rate`` > 0."""
        return _linked(self.linked_records, self.anchor_rate)

    @property
    def label_cost(self) -> bool:
        """Whether OTM uploads carry the label block (``label-cost-weight`` > 0)."""
        return self.label_cost_weight > 0 and self.method in OTM_METHODS

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a kebab-case mapping (Flower run-config style)."""
        return {_kebab(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}


def _kebab(name: str) -> str:
    return name.replace("_", "-")


Check = tuple[bool, str]

_WEIGHTS = (
    "weight_rec",
    "weight_mix",
    "weight_reg",
    "weight_mmd",
    "weight_task",
    "weight_cluster",
)


def _choice_checks(c: RunConfig) -> list[Check]:
    """Keys that take one of a fixed set of values (and the mixer's device)."""
    return [
        (c.task in TASKS, f"task must be one of {TASKS}"),
        (c.method in METHODS, f"method must be one of {METHODS}"),
        (
            c.barycenter_variant in VARIANTS,
            f"barycenter-variant must be one of {VARIANTS}",
        ),
        (c.solver in SOLVERS, f"solver must be one of {SOLVERS}"),
        (c.preset in PRESETS, f"preset must be one of {PRESETS}"),
        (
            c.preprocess in PREPROCESS_CHOICES,
            f"preprocess must be one of {PREPROCESS_CHOICES}",
        ),
        (c.mix_frame in MIX_FRAMES, f"mix-frame must be one of {MIX_FRAMES}"),
        (
            c.parameter_aggregation in AGGREGATIONS,
            f"parameter-aggregation must be one of {AGGREGATIONS}",
        ),
        (
            c.linked_records in LINKED_RECORDS,
            f"linked-records must be one of {LINKED_RECORDS}",
        ),
        (
            c.term_guard_criterion in GUARD_CRITERIA,
            f"term-guard-criterion must be one of {GUARD_CRITERIA}",
        ),
        (
            re.fullmatch(r"cpu|auto|cuda(:\d+)?", c.mixer_device) is not None,
            "mixer-device must be cpu, auto, cuda or cuda:N",
        ),
        (
            c.solver == "fast" or c.mixer_device in ("cpu", "auto"),
            "mixer-device cuda needs solver=fast (the exact solver is CPU only)",
        ),
    ]


def _range_checks(c: RunConfig) -> list[Check]:
    """Numeric keys that must lie in a range (the loss weights apart)."""
    return [
        (c.num_server_rounds >= 1, "num-server-rounds must be >= 1"),
        (c.n_clusters >= 0, "n-clusters must be >= 0 (0: from the parties' labels)"),
        (c.local_epochs >= 0, "local-epochs must be >= 0"),
        (c.batch_size >= 1, "batch-size must be >= 1"),
        (c.mix_batch_size >= 2, "mix-batch-size must be >= 2"),
        (c.latent_dim >= 0, "latent-dim must be >= 1, or 0 (auto)"),
        (c.hidden_dim >= 1, "hidden-dim must be >= 1"),
        (c.learning_rate > 0, "learning-rate must be > 0"),
        (0.0 <= c.fgw_alpha <= 1.0, "fgw-alpha must be in [0, 1]"),
        (c.barycenter_iterations >= 1, "barycenter-iterations must be >= 1"),
        (c.dirichlet_concentration > 0, "dirichlet-concentration must be > 0"),
        (0.0 <= c.unaligned_rate <= 1.0, "unaligned-rate must be in [0, 1]"),
        (c.agents_per_modality >= 1, "agents-per-modality must be >= 1"),
        (0.0 < c.test_fraction < 1.0, "test-fraction must be in (0, 1)"),
        (
            0.0 <= c.validation_fraction < 1.0,
            "validation-fraction must be in [0, 1)",
        ),
        (c.min_agents >= 1, "min-agents must be >= 1"),
        (c.outlier_factor >= 0, "outlier-factor must be >= 0 (0: off)"),
        (c.dp_clip >= 0, "dp-clip must be >= 0 (0: no local DP)"),
        (c.dp_noise >= 0, "dp-noise must be >= 0"),
        (0 < c.dp_delta < 1, "dp-delta must be in (0, 1)"),
        (c.num_agents >= 0, "num-agents must be >= 0 (0: one per view)"),
        (c.round_timeout > 0, "round-timeout must be > 0"),
        (c.rejoin_timeout >= 0, "rejoin-timeout must be >= 0 (0: do not wait)"),
        (0.0 < c.fraction_train <= 1.0, "fraction-train must be in (0, 1]"),
        (0.0 <= c.anchor_rate <= 1.0, "anchor-rate must be in [0, 1]"),
        (c.anchor_weight > 0, "anchor-weight must be > 0"),
        (
            c.min_links_per_cluster >= 0,
            "min-links-per-cluster must be >= 0 (0: off)",
        ),
        (c.label_cost_weight >= 0, "label-cost-weight must be >= 0 (0: off)"),
        (c.term_guard_margin >= 0, "term-guard-margin must be >= 0"),
    ]


def _combination_checks(c: RunConfig) -> list[Check]:
    """Keys whose valid values depend on other keys."""
    return [
        (
            c.label_cost_weight <= 0 or c.task == "classification",
            "label-cost-weight > 0 needs task=classification (it appends the "
            "agents' labels to their uploaded codes)",
        ),
        (
            METHOD_TASK.get(c.method, c.task) == c.task,
            "method otm-head averages the task head, which only "
            "task=classification has (use otm-fedavg for clustering)",
        ),
        (
            not c.resume or bool(c.checkpoint_dir),
            "resume needs checkpoint-dir (the folder of the run to resume)",
        ),
    ]


def _weight_checks(c: RunConfig) -> list[Check]:
    """Loss weights, each ``>= 0``."""
    return [(getattr(c, w) >= 0, f"{_kebab(w)} must be >= 0") for w in _WEIGHTS]


def valid_keys() -> list[str]:
    """Return every accepted run-config key, kebab case."""
    return [_kebab(f.name) for f in dataclasses.fields(RunConfig)]


def parse_run_config(
    mapping: Mapping[str, Any] | None = None, **overrides: Any
) -> RunConfig:
    """Build a :class:`RunConfig` from a run-config mapping plus overrides.

    Parameters
    ----------
    mapping : Mapping[str, Any], optional
        Keys in kebab case (``"local-epochs"``) or snake case; values of the
        field's type or strings that convert to it (``"3"`` for an int).
    **overrides
        Further keys (snake case), applied after ``mapping``.

    Returns
    -------
    RunConfig
        The validated configuration.

    Raises
    ------
    ConfigError
        On an unknown key (the message lists the valid ones) or an invalid value.
    """
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    values: dict[str, Any] = {}
    items = list((mapping or {}).items()) + list(overrides.items())
    for key, value in items:
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError(
                f"unknown run-config key {key!r}; valid keys: {', '.join(valid_keys())}"
            )
        values[name] = _coerce(key, value, type(getattr(RunConfig, name)))
    # a partial mapping names the keys the user set; a complete one (Flower's
    # run config, a config's to_dict) cannot tell, so its reference values count
    # as left alone
    given = None if len(values) == len(fields) else set(values)
    return RunConfig(**_with_preset(values, given))


def _with_preset(values: dict[str, Any], given: set[str] | None) -> dict[str, Any]:
    """``values`` (snake case, coerced) with the preset's keys filled in where a
    key is not in ``given`` (``None``: where it is at its reference value)."""
    preset = values.get("preset", RunConfig.preset)
    if preset != "validated":
        return values
    method = values.get("method", RunConfig.method)
    task = values.get("task", RunConfig.task)
    anchored = _linked(
        values.get("linked_records", RunConfig.linked_records),
        values.get("anchor_rate", RunConfig.anchor_rate),
    )
    try:
        keys = preset_keys(method, task, anchored)
    except ValueError:
        return values  # an unknown method: RunConfig names it
    out = dict(values)
    for key, value in keys.items():
        name = key.replace("-", "_")
        reference = getattr(RunConfig, name)
        if name not in (given or ()) and out.get(name, reference) == reference:
            out[name] = value
    return out


def _linked(linked_records: str, anchor_rate: float) -> bool:
    """Whether parties hold linked records: ``yes``, or ``auto`` with
    ``anchor-rate`` > 0 (a simulation's linkage)."""
    return linked_records == "yes" or (linked_records == "auto" and anchor_rate > 0)


def _coerce(key: str, value: Any, kind: type) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0"):
                raise ValueError("not a boolean (true or false)")
            return text in ("true", "1")
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not an integer")
            return int(value)
        return kind(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"run-config key {key!r}: cannot read {value!r} as {kind.__name__}"
        ) from err
