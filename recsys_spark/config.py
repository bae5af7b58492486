"""Typed pipeline configuration: YAML files layered over ``conf/base.yaml`` plus dotted overrides.

Every key is declared in a dataclass below, so a typo in a file or in ``--set`` fails fast with the
key's full dotted name instead of being silently ignored.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml

from recsys_spark.errors import UserError

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class ConfigError(UserError, ValueError):
    """A config file or override names an unknown key or has a value of the wrong type."""

    exit_code = 1


@dataclass
class SparkConfig:
    master: str = "local[*]"
    app_name: str = "recsys-spark"
    hive: bool = True
    warehouse_dir: Optional[str] = "var/warehouse"
    metastore: str = "derby"
    """derby (embedded in the job's JVM under metastore_dir: one process at a time), postgres (a
    shared PostgreSQL database at metastore_url: jobs and the Thrift Server at once) or site (the
    cluster's hive-site.xml)."""
    metastore_dir: Optional[str] = "var/metastore"
    """Embedded Derby metastore directory (metastore: derby)."""
    metastore_url: Optional[str] = None
    """JDBC URL of the shared metastore database (metastore: postgres)."""
    metastore_user: str = "metastore"
    metastore_password_file: Optional[str] = None
    """Owner-only file holding the metastore role's password; RECSYS_METASTORE_PASSWORD overrides it.
    The password never enters the config, a command line or a log."""
    jdbc_driver_jar: Optional[str] = None
    """The metastore database's JDBC driver, put on the driver's class path."""
    conf: dict[str, str] = field(default_factory=dict)


@dataclass
class StorageConfig:
    database: str = "recsys"
    root: str = "var"
    """Directory for artifacts that are not metastore tables (training examples, models, reports)."""


@dataclass
class SyntheticConfig:
    seed: int = 7
    epoch: str = "2026-11-01"
    """Day zero of catalogue and user-base growth (new_items_per_day, new_users_per_day)."""
    events_per_day: int = 20000
    days: int = 14
    n_users: int = 5000
    n_items: int = 2000
    new_items_per_day: int = 20
    new_users_per_day: int = 100
    mean_session_length: float = 6.0
    item_popularity_power: float = 2.5
    user_activity_power: float = 2.0
    transition_prob: float = 0.7
    intents: int = 3
    cart_prob: float = 0.08
    purchase_prob: float = 0.3
    partitions: int = 4


@dataclass
class SequencesConfig:
    lookback_days: int = 30
    max_rejected_share: float = 0.05
    event_types: list[str] = field(default_factory=lambda: ["view", "click", "cart", "purchase"])
    event_weights: dict[str, float] = field(default_factory=dict)
    """Weight of an event type in the popularity counts (item_index.count, negative sampling)."""
    collapse_repeats: bool = True
    min_item_support: int = 5
    min_user_support: int = 3
    max_support_rounds: int = 5
    session_gap_minutes: Optional[int] = None
    max_history: int = 200
    split: str = "leave_last_out"
    temporal_cutoff_days: int = 1
    validation_fraction: float = 1.0
    """Share of users (a seeded sample) who give up an item for validation: the second-to-last under
    leave_last_out, the last under validation_only; the others train on it."""
    window_length: int = 50
    stride: int = 25
    num_negatives: int = 32
    negative_alpha: float = 0.75
    seed: int = 17
    num_train_workers: int = 2
    rows_per_row_group: int = 2000


@dataclass
class TrainConfig:
    embedding_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 1
    cell: str = "lstm"
    dropout: float = 0.1
    """On the item embeddings the recurrence reads."""
    hidden_dropout: float = 0.0
    """On the recurrent outputs before the projection (the official GRU4Rec's 'hidden dropout')."""
    last_item_transitions: bool | Literal["auto"] = "auto"
    """Add the gated last-item transition term to the scores (recsys_spark.model): the counts of what
    followed the query's last item in training, which an embedding cannot memorise item by item.
    ``auto`` (training.trainer.resolve_transitions): on when the scored users' own histories are in
    the counts (leave_last_out, temporal), off for ``validation_only`` nights, whose test queries
    are sessions the counts never saw."""
    score_blend: bool | Literal["auto"] = "auto"
    """Add the held-out blend (recsys_spark.model): the query's own items and, where the transition
    term is not learned, the last item's transition counts, weighted on the validation split after
    training. ``auto`` (training.trainer.resolve_blend): on where evaluation ranks the seen items
    (``evaluate.mask_seen: false``), off where they are masked and a return is never served."""
    loss: str = "auto"
    """softmax, sampled_softmax, bpr_max, or auto: softmax up to full_softmax_max_items items,
    sampled_softmax beyond (training.losses.resolve_loss)."""
    full_softmax_max_items: int = 20000
    shared_negatives: int = 2048
    """Sampled losses: popularity^alpha negatives drawn per step and shared by the whole batch."""
    batch_size: int = 128
    epochs: int = 10
    lr: float = 0.003
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    patience: int = 3
    seed: int = 42
    backend: Literal["horovod", "ddp", "single"] = "horovod"
    """horovod (Horovod over Gloo), ddp (torch DistributedDataParallel over Gloo, started by
    TorchDistributor) or single (one process); training.comm holds what differs between them."""
    launcher: Literal["spark", "horovodrun"] = "spark"
    """How Horovod ranks start: as Spark tasks (horovod.spark.run) or by horovodrun on this host."""
    num_proc: int = 2
    threads_per_proc: int = 1
    shuffle_buffer: int = 2000
    length_buckets: int = 1
    """Batches are drawn this many at a time and grouped by session length (1: plain random
    batches): the recurrence runs only as far as a batch's longest row."""
    eval_batch_size: int = 512
    lr_schedule: str = "cosine"
    """Decay after the linear warm-up: cosine or linear (to zero at the last step)."""
    in_batch_negatives: bool = True
    """Sampled losses also use the other examples' targets of the batch as negatives."""
    logq_correction: bool = True
    bpr_reg: float = 1.0
    """BPR-max score regularisation weight (lambda of the GRU4Rec top-k gains paper)."""
    feed: Literal["petastorm", "arrow"] = "petastorm"
    """Reader of training_examples (training.data.make_feed): petastorm, or arrow (pyarrow.dataset,
    for stacks past pyarrow 14, where Petastorm no longer runs). Same shards, same step count."""
    reader_workers: int = 1
    """Petastorm reader threads; more than 1 is faster but makes the row order nondeterministic."""
    keep_checkpoints: int = 2
    timeout_s: int = 600
    """Bound on worker start-up and on any one collective call, so a dead worker fails the job."""
    warm_start: bool = False
    """Initialise from the production model (new items keep a fresh init) instead of from scratch."""


TUNABLE = ("lr", "dropout", "hidden_dropout", "embedding_dim", "hidden_size", "batch_size",
           "weight_decay", "last_item_transitions", "score_blend", "cell", "loss", "num_layers")
"""The train settings ``recsys tune`` can search (their ranges: training.tune.SPACE)."""


@dataclass
class TuneConfig:
    """``recsys tune``: an Optuna search of train settings on a night's validation split."""
    params: list[str] = field(default_factory=lambda: [
        "lr", "dropout", "hidden_dropout", "embedding_dim", "hidden_size", "batch_size",
        "weight_decay", "last_item_transitions"])
    """Which of TUNABLE to search; the others keep the config's value."""
    trials: int = 20
    timeout_s: int = 3600
    """No trial starts after this many seconds (the running one finishes)."""
    seed: int = 0
    startup_trials: int = 5
    """Random trials before TPE models the space; also the pruner's: none is pruned before them."""
    prune_warmup_epochs: int = 2
    """A trial is compared with the median of the others only after this many epochs."""
    threads: int = 0
    """Torch threads of a trial (0: every core): trials run one at a time in one process."""


@dataclass
class EvaluateConfig:
    protocols: list[str] = field(default_factory=lambda: ["leave_last_out", "temporal"])
    """leave_last_out (the dataset's test split when it was built that way) and/or temporal (every
    event after the cut-off of sequences.temporal_cutoff_days is a query)."""
    splits: list[str] = field(default_factory=lambda: ["test"])
    """test and/or validation."""
    baselines: list[str] = field(default_factory=lambda: [
        "most_popular", "recently_popular", "transitions", "sknn", "als"])
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20])
    mask_seen: bool = True
    batch_size: int = 512
    max_queries: int = 0
    """Evaluate a seeded random sample of at most this many queries per split (0 = all)."""
    seed: int = 11
    recent_days: int = 7
    sknn_k: int = 100
    sknn_sample_size: int = 500
    """Neighbours are chosen among this many most recent sequences sharing an item (0 = all)."""
    sknn_decay: str = "div"
    """Position weights of the query: div (1/distance from the last item), linear or same."""
    als_rank: int = 64
    als_max_iter: int = 10
    als_reg: float = 0.1
    als_alpha: float = 10.0


@dataclass
class ScoreConfig:
    k: int = 50
    mask_seen: bool = True
    blocklist: list[str] = field(default_factory=list)
    """item_ids never recommended (legal, out of stock, ...)."""
    min_history: int = 1
    """Users with fewer known items than this get the popularity fallback."""
    batch_size: int = 512
    partitions: int = 8
    row_count_band: list[float] = field(default_factory=lambda: [0.5, 2.0])
    """Publish only if tonight's user count / the previous published night's is inside this band."""
    gate_metrics: list[str] = field(default_factory=lambda: ["ndcg@10", "hr@10"])
    gate_tolerance: float = 0.05
    """A candidate may fall at most this fraction below production on each gate metric."""
    gate_protocol: str = "leave_last_out"
    gate_split: str = "test"


@dataclass
class SimilarConfig:
    """The similar_items stage: every item's k most likely next items (recsys_spark.similar)."""
    k: int = 20
    rule: str = "blend"
    """next (the model's next-item scores after the one-item history), cosine (of the item
    embeddings) or blend (log-softmax of next + blend_weight x cosine); chosen by the item_to_item
    evaluation (README)."""
    blend_weight: float = 1.0
    compare_rules: list[str] = field(default_factory=list)
    """Rules evaluated next to the shipped one (offline_metrics name model_<rule>), for choosing."""
    batch_size: int = 256
    partitions: int = 4


@dataclass
class PlatformConfig:
    """The single-host platform of ``scripts/platform.sh`` (PostgreSQL metastore, Spark standalone,
    Thrift Server). The master's and PostgreSQL's addresses come from ``spark.master`` and
    ``spark.metastore_url``, so the jobs and the platform cannot disagree on them."""
    root: str = "var/platform"
    """Data directories, logs, pid files and the generated password."""
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "3g"
    master_ui_port: int = 8080
    worker_ui_port: int = 8081
    """The first worker's web UI; the others count up."""
    thrift_port: int = 10000
    thrift_master: str = "local[2]"
    """The Thrift Server's own master: it holds none of the cluster's cores."""
    thrift_driver_memory: str = "2g"
    start_timeout_s: int = 180


@dataclass
class StreamConfig:
    """``recsys stream``: the live refresh of users' lists from new events (recsys_spark.live)."""
    landing_dir: Optional[str] = None
    """Directory the new event files land in (default: <storage.root>/landing)."""
    format: Literal["json", "parquet"] = "json"
    """json: JSON lines, every field read as text (a bad value is quarantined, not nulled); parquet:
    files with the events columns and types."""
    trigger_seconds: float = 1.0
    """How often the long-running query looks for new files."""
    max_files_per_trigger: int = 1000
    """Bounds one micro-batch when a backlog is caught up."""
    compact_every: int = 100
    """Every this many micro-batches, the newest row of every live user is rewritten into one
    partition and the older ones are dropped, so reads and the metastore stay small."""
    partitions: int = 2
    """Spark partitions the refreshed users are scored in (the micro-batch is small)."""


@dataclass
class NightlyConfig:
    source: str = "synthetic"
    """'synthetic': nights missing from recsys.events are generated (synthetic.days of history on first
    use); 'table': events are expected in recsys.events and a missing night fails the run."""


def _short_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    sequences: SequencesConfig = field(default_factory=SequencesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    nightly: NightlyConfig = field(default_factory=NightlyConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def hash(self) -> str:
        """Short content hash of the resolved config, recorded in manifests and artifacts."""
        return _short_hash(self.to_dict())

    def model_hash(self) -> str:
        """Hash of what shapes a model (the data preparation and training sections) but not where
        things live or how Spark runs: moving a warehouse or resizing a cluster keeps model names."""
        return _short_hash({"sequences": dataclasses.asdict(self.sequences),
                            "train": dataclasses.asdict(self.train)})

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(self.to_yaml())


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``hint`` (int/float/str/bool, Optional, list, dict)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key)
        expected = []
        for option in inner:  # e.g. bool | Literal["auto"]: the first that takes the value
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                expected.append(str(error).split(": expected ", 1)[1].rsplit(", got ", 1)[0])
        raise ConfigError(f"{key}: expected {' or '.join(expected)}, got {value!r}")
    if origin is typing.Literal:
        options = typing.get_args(hint)
        if isinstance(value, bool) or value not in options:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, options))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, inner = typing.get_args(hint)
        return {str(k): _coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"{key}: unsupported type {hint!r}")


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    """Apply ``data`` onto the dataclass instance ``obj`` in place, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{dotted}' (known under '{prefix or '.'}': "
                              f"{', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, f"{dotted}.")
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted))


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{'a': {'b': {'c': value}}}``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    dotted, raw = text.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override '{text}' has an empty key")
    value: Any = yaml.safe_load(raw) if raw.strip() else ""
    for part in reversed(parts):
        value = {part: value}
    return value


def _resolve_conf_path(name: str, relative_to: Path = CONF_DIR) -> Path:
    path = Path(name)
    if path.exists():
        return path
    filename = name if name.endswith(".yaml") else f"{name}.yaml"
    for candidate in dict.fromkeys([relative_to / filename, CONF_DIR / filename]):
        if candidate.exists():
            return candidate
    raise ConfigError(f"config file '{name}' not found (looked at {path} and {CONF_DIR / filename})")


def _base_layer(conf_path: Optional[Path]) -> Optional[Path]:
    """``base.yaml`` beside the chosen file (so a deployed conf/ directory is self-contained), else
    the project's; None when neither exists (code shipped as a zip: the dataclass defaults mirror
    base.yaml, which a test enforces)."""
    for directory in ([conf_path.parent] if conf_path else []) + [CONF_DIR]:
        if (directory / "base.yaml").exists():
            return directory / "base.yaml"
    return None


def _read_layer(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def _extended_layers(conf_path: Optional[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """``conf_path`` after the chain of files its top-level ``extends: NAME`` names (e.g.
    standalone.yaml extends local.yaml: same machine-sized settings, another deployment)."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    while conf_path is not None:
        if any(conf_path.resolve() == seen.resolve() for seen, _ in chain):
            raise ConfigError(f"{conf_path}: 'extends' loops back on itself")
        data = _read_layer(conf_path)
        parent = data.pop("extends", None)
        chain.insert(0, (conf_path, data))
        conf_path = None if parent is None else _resolve_conf_path(str(parent), relative_to=conf_path.parent)
    return chain


def load_config(conf: str | Path | None = "local", overrides: Optional[list[str]] = None,
                overlays: Optional[list[str | Path]] = None) -> Config:
    """Build the config: defaults, then ``base.yaml``, then ``conf`` (a path or a name in ``conf/``),
    then each overlay file (e.g. the settings ``recsys tune`` chose, whatever the deployment), then
    each ``section.key=value`` override in order."""
    cfg = Config()
    conf_path = None
    if conf is not None and Path(str(conf)).name not in ("base", "base.yaml"):
        conf_path = _resolve_conf_path(str(conf))
    base = _base_layer(conf_path)
    for _, data in ([(base, _read_layer(base))] if base else []) + _extended_layers(conf_path):
        _merge(cfg, data, "")
    for overlay in overlays or []:
        path = Path(overlay)
        if not path.is_file():
            raise ConfigError(f"overlay file '{overlay}' not found")
        data = _read_layer(path)
        if "extends" in data:
            raise ConfigError(f"{path}: an overlay cannot 'extends' (it applies over --conf)")
        _merge(cfg, data, "")
    for override in overrides or []:
        _merge(cfg, parse_override(override), "")
    return cfg
