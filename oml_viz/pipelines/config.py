"""The validate / train YAML configs: their schema, reading, and path checks.

Relative paths under ``dataset:`` and ``model.weights`` are relative to the config file's
folder (so a config and its data travel together); output paths (``logger.args.save_dir``,
``checkpoint``) are relative to the working directory, as in OML.

A validate config (every key but ``dataset.dataframe`` has a default)::

    dataset:
      dataframe: data/df.csv          # an OML dataframe (CSV)
      dataset_root: data/             # default: the CSV's folder
    model:
      kind: vit                       # vit | resnet | timm
      arch: vit_tiny_patch16_224      # any timm name
      weights: vit.pt                 # null (random init) | a checkpoint | pretrained
      normalise_features: true
      kwargs: {img_size: 64, patch_size: 8, depth: 4}
    image_size: null                  # side the images are resized to; null = the model's own
    metric_args: {cmc_top_k: [1, 5], map_top_k: [5], fmr_vals: [0.1], pcf_variance: [0.5]}
    logger: {name: tensorboard, args: {save_dir: logs}}
    log_images: true
    baseline:                         # optional: compare with another model (logs compare/...)
      embeddings: old_embeddings.npy  # a saved (N, D) .npy / .pt file, or model: {...} + weights
      name: v1

A train config adds ``loss``, ``optimizer``, ``epochs``, ``sampler``, ``valid_period``,
``checkpoint`` (see :class:`TrainConfig`).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "df.csv").write_text("label,path,split,is_query,is_gallery\\n")
    37
    >>> _ = (folder / "validate.yaml").write_text("dataset: {dataframe: df.csv}\\nmetric_args: {cmc_top_k: [1, 5]}\\n")
    >>> cfg = load_config(folder / "validate.yaml", "validate")
    >>> cfg.metric_args.cmc_top_k, cfg.dataset.dataframe == str(folder / "df.csv")   # paths: from the file's folder
    ([1, 5], True)
    >>> _ = (folder / "typo.yaml").write_text("dataset: {dataframe: df.csv}\\nmetric_args: {cmc_topk: [1]}\\n")
    >>> load_config(folder / "typo.yaml", "validate")   # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    oml_viz.pipelines.schema.ConfigError: invalid config ...typo.yaml: 1 problem(s):
      metric_args.cmc_topk: unknown key...
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from oml_viz.errors import InputFileNotFoundError, InputValueError
from oml_viz.pipelines.schema import ConfigError, build, in_open_unit, in_unit, positive

__all__ = [
    "LOGGER_NAMES",
    "BaselineConfig",
    "ConfigError",
    "DatasetConfig",
    "LoggerConfig",
    "LossConfig",
    "MetricArgs",
    "ModelConfig",
    "OptimizerConfig",
    "SamplerConfig",
    "TrainConfig",
    "ValidateConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
]

LOGGER_NAMES = ("tensorboard", "mlflow", "wandb", "neptune", "clearml")


def _at_least(n: int):
    return lambda v: None if v >= n else f"must be >= {n}, got {v!r}"


def _positive_float(v: float) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else f"must be >= 0, got {v!r}"


def _device(v: str) -> str | None:
    ok = v in ("auto", "cpu", "cuda", "mps") or (v.startswith("cuda:") and v[5:].isdigit())
    return None if ok else f"must be auto, cpu, cuda, cuda:N or mps, got {v!r}"


@dataclass
class DatasetConfig:
    """Where the data is: an OML dataframe (CSV) and the folder its ``path`` column starts from."""

    dataframe: str
    dataset_root: str | None = None


@dataclass
class ModelConfig:
    """An extractor from ``oml_viz.models``; ``kwargs`` go to ``timm.create_model``."""

    arch: str = "vit_tiny_patch16_224"
    kind: Literal["vit", "resnet", "timm"] = "vit"
    weights: str | None = None
    normalise_features: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricArgs:
    """What :meth:`RetrievalResult.metrics` computes (OML's ``metric_args``)."""

    cmc_top_k: list[int] = field(default_factory=lambda: [1, 5], metadata={"check": positive})
    precision_top_k: list[int] = field(default_factory=lambda: [5], metadata={"check": positive})
    map_top_k: list[int] = field(default_factory=lambda: [5], metadata={"check": positive})
    fmr_vals: list[float] = field(default_factory=list, metadata={"check": in_open_unit})
    pcf_variance: list[float] = field(default_factory=list, metadata={"check": in_unit})
    return_only_overall_category: bool = False
    # OML's visualization keys: metric kinds the worst-queries figure never sorts by, and
    # whether each category also gets its figure
    metrics_to_exclude_from_visualization: list[str] = field(default_factory=list)
    visualize_only_overall_category: bool = True

    @property
    def top_n(self) -> int:
        """The retrieval depth the requested metrics need."""
        return max([1, *self.cmc_top_k, *self.precision_top_k, *self.map_top_k])

    @property
    def worst_metric(self) -> str:
        """The metric the worst-queries figure sorts by (mAP when asked for, else CMC, else precision)."""
        for kind, ks in (("map", self.map_top_k), ("cmc", self.cmc_top_k), ("precision", self.precision_top_k)):
            if ks and kind not in self.metrics_to_exclude_from_visualization:
                return f"{kind}/{max(ks)}"
        return "cmc/1"


@dataclass
class LoggerConfig:
    """``create_logger``'s ``{name, args}`` (OML's ``logger`` block)."""

    name: Literal["tensorboard", "mlflow", "wandb", "neptune", "clearml"] = "tensorboard"
    args: dict[str, Any] = field(default_factory=dict)


def _compare_metric(v: str) -> str | None:
    from oml_viz.engine.metrics import parse_metric

    try:
        parse_metric(v)
    except ValueError as e:
        return str(e)
    return None


@dataclass
class BaselineConfig:
    """A model to compare against (``oml-viz validate`` logs ``compare/OVERALL/map/5/delta``, ...).

    Either ``model`` (with its ``weights``: it embeds the validation rows) or ``embeddings``: a saved
    (N, D) ``.npy`` / ``.pt`` file, one row per validation row (or per dataframe row). ``metrics``
    default to the ``metric_args``' per-query metrics (cmc, precision, map).
    """

    model: ModelConfig | None = None
    embeddings: str | None = None
    name: str = "baseline"
    metrics: list[str] = field(default_factory=list, metadata={"check": _compare_metric})
    n_boot: int = field(default=1000, metadata={"check": _at_least(100)})
    kind: Literal["regressed", "improved", "changed"] = "regressed"


@dataclass
class ValidateConfig:
    """``oml-viz validate``: extract, retrieve, compute and log metrics on the validation split."""

    dataset: DatasetConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    image_size: int | None = field(default=None, metadata={"check": _at_least(8)})
    distance: Literal["euclidean", "cosine"] = "euclidean"
    metric_args: MetricArgs = field(default_factory=MetricArgs)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    log_images: bool = True
    n_worst_queries: int = field(default=5, metadata={"check": positive})
    device: str = field(default="auto", metadata={"check": _device})
    batch_size_inference: int = field(default=64, metadata={"check": positive})
    num_workers: int = field(default=0, metadata={"check": _at_least(0)})
    seed: int = 0
    tags: list[str] = field(default_factory=list)
    progress: bool = True
    baseline: BaselineConfig | None = None

    # set by load_config: the file it came from (not a config key)
    source: str | None = field(default=None, init=False, repr=False, compare=False)


@dataclass
class LossConfig:
    """Triplet loss: ``margin`` (null = soft margin) and which triplets the miner keeps."""

    margin: float | None = field(default=0.2, metadata={"check": _positive_float})
    miner: Literal["all", "hard"] = "all"


@dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw", "sgd"] = "adamw"
    lr: float = field(default=1e-3, metadata={"check": _positive_float})
    weight_decay: float = field(default=0.0, metadata={"check": _non_negative})


@dataclass
class SamplerConfig:
    """Balanced batches: ``n_labels`` labels x ``n_instances`` items each."""

    n_labels: int = field(default=8, metadata={"check": _at_least(2)})
    n_instances: int = field(default=4, metadata={"check": _at_least(2)})


@dataclass
class TrainConfig(ValidateConfig):
    """``oml-viz train``: the validate config plus what training needs."""

    loss: LossConfig = field(default_factory=LossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    epochs: int = field(default=10, metadata={"check": positive})
    valid_period: int = field(default=1, metadata={"check": positive})
    hflip: bool = True
    checkpoint: str | None = None


_KINDS = {"validate": ValidateConfig, "train": TrainConfig}


def config_from_dict(data: Any, kind: str = "validate", base_dir: str | os.PathLike | None = None,
                     source: str | None = None) -> ValidateConfig:
    """Check ``data`` (as from ``yaml.safe_load``) against the ``kind`` schema, resolve input paths
    against ``base_dir`` and check the dataset and weight files exist.

    Raises:
        ConfigError: every schema problem, each naming its key path.
        FileNotFoundError: the dataframe, dataset root or weights file is missing (names the path).
    """
    if kind not in _KINDS:
        raise InputValueError(f"kind must be one of {sorted(_KINDS)}, got {kind!r}")
    from oml_viz.oml.configs import is_oml_config, translate_oml_config, warn_notes

    if is_oml_config(data):  # OML's pipeline format, detected by its keys
        data, notes = translate_oml_config(data, kind, base_dir, source)
        warn_notes(notes, source)
    cfg = build(_KINDS[kind], data, source)
    cfg.source = source
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    _resolve_inputs(cfg, base)
    return cfg


def load_config(path: str | os.PathLike, kind: str = "validate") -> ValidateConfig:
    """Read a YAML config with ``yaml.safe_load`` and check it (see :func:`config_from_dict`)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileNotFoundError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], str(p)) from e
    return config_from_dict(data, kind, base_dir=p.resolve().parent, source=str(p))


def _resolve(base: Path, value: str) -> str:
    q = Path(value).expanduser()
    return str(q if q.is_absolute() else base / q)


def _resolve_inputs(cfg: ValidateConfig, base: Path) -> None:
    ds = cfg.dataset
    ds.dataframe = _resolve(base, ds.dataframe)
    if not Path(ds.dataframe).is_file():
        raise InputFileNotFoundError(f"dataset.dataframe: file not found: {ds.dataframe}")
    if ds.dataset_root is not None:
        ds.dataset_root = _resolve(base, ds.dataset_root)
        if not Path(ds.dataset_root).is_dir():
            raise InputFileNotFoundError(f"dataset.dataset_root: folder not found: {ds.dataset_root}")
    w = cfg.model.weights
    if w is not None and w != "pretrained":
        cfg.model.weights = _resolve(base, w)
        if not Path(cfg.model.weights).is_file():
            raise InputFileNotFoundError(f"model.weights: file not found: {cfg.model.weights} "
                                    "(null = random init, pretrained = timm's weights)")
    if cfg.baseline is not None:
        _resolve_baseline(cfg.baseline, base, cfg.source)


def _resolve_baseline(bl: BaselineConfig, base: Path, source: str | None) -> None:
    if (bl.model is None) == (bl.embeddings is None):
        raise ConfigError(["baseline: give either model (a second model and its weights) or embeddings "
                           "(a saved .npy / .pt file), not both and not neither"], source)
    if bl.name in ("", "current", "delta", "ci_low", "ci_high", "p_value"):
        raise ConfigError([f"baseline.name: {bl.name!r} names a column of the comparison; choose another"], source)
    if bl.embeddings is not None:
        bl.embeddings = _resolve(base, bl.embeddings)
        if not Path(bl.embeddings).is_file():
            raise InputFileNotFoundError(f"baseline.embeddings: file not found: {bl.embeddings}")
        if Path(bl.embeddings).suffix.lower() not in (".npy", ".pt", ".pth"):
            raise ConfigError([f"baseline.embeddings: expected a .npy or .pt file, got {bl.embeddings}"], source)
    w = bl.model.weights if bl.model is not None else None
    if w is not None and w != "pretrained":
        bl.model.weights = _resolve(base, w)  # type: ignore[union-attr]
        if not Path(bl.model.weights).is_file():  # type: ignore[union-attr]
            raise InputFileNotFoundError(f"baseline.model.weights: file not found: {bl.model.weights}")  # type: ignore[union-attr]


def config_to_dict(cfg: ValidateConfig) -> dict[str, Any]:
    """The config as plain nested dicts (what is logged as pipeline info)."""
    return dataclasses.asdict(cfg)
