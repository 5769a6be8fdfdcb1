"""OML pipeline configs (``validate.yaml`` / ``train.yaml`` of open-metric-learning 4.0), read as ours.

``oml-viz validate`` and ``oml-viz train`` call :func:`is_oml_config` on the parsed YAML and,
for an OML config, :func:`translate_oml_config` turns it into our schema's dict before the usual
checks. What maps to what:

==========================================================  =====================================
OML key                                                      oml_viz
==========================================================  =====================================
``dataset_root`` + ``dataframe_name`` (top level, or in       ``dataset.dataset_root``,
``datasets: {name, args: {...}}``)                            ``dataset.dataframe``
``transforms_val: {name, args: {im_size}}``                   ``image_size`` (the model's own timm
                                                              preprocessing at that size)
``transforms_train``                                          ``hflip: true``
``extractor: {name: vit | resnet, args: {arch, weights,       ``model`` (OML archs -> timm names;
normalise_features}}``                                        ``weights`` a local file)
``metric_args`` (``pfc_variance`` is OML's typo of            ``metric_args``
``pcf_variance``: accepted, with a warning)
``bs_val``, ``num_workers``, ``logger``, ``log_images``,       ``batch_size_inference``, same names
``tags``, ``seed``
``sampler: {name: balance, args}``                            ``sampler``
``criterion: {name: triplet_with_miner, args}``               ``loss``
``optimizer: {name, args: {lr, weight_decay}}``               ``optimizer``
``max_epochs``, ``valid_period``                              ``epochs``, ``valid_period``
==========================================================  =====================================

Keys that only steer OML's runtime (``hydra``, ``accelerator``, ``devices``, ``precision``,
``logs_root``, ``${now:...}`` folders, ...) are listed once in a warning and skipped. Relative
paths are relative to the config file's folder, as in our configs.

Example:
    >>> cfg = {"dataset_root": "data", "dataframe_name": "df.csv", "bs_val": 32,
    ...        "extractor": {"name": "vit", "args": {"arch": "vits16", "weights": None,
    ...                                              "normalise_features": False}},
    ...        "transforms_val": {"name": "norm_resize_torch", "args": {"im_size": 224}}}
    >>> is_oml_config(cfg)
    True
    >>> ours, notes = translate_oml_config(cfg, "validate")
    >>> ours["dataset"], ours["model"]["arch"], ours["image_size"], ours["batch_size_inference"]
    ({'dataframe': 'data/df.csv', 'dataset_root': 'data'}, 'vit_small_patch16_224', 224, 32)
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from oml_viz.checks import check_int
from oml_viz.errors import InputError, InputFileNotFoundError
from oml_viz.pipelines.schema import ConfigError

__all__ = ["OML_ZOO_WEIGHTS", "is_oml_config", "oml_arch_to_timm", "translate_oml_config"]

# OML's architecture names -> the timm model of the same network
_VIT_ARCHS = {
    "vits16": "vit_small_patch16_224", "vits8": "vit_small_patch8_224",
    "vitb16": "vit_base_patch16_224", "vitb8": "vit_base_patch8_224",
    "vits14": "vit_small_patch14_dinov2", "vitb14": "vit_base_patch14_dinov2",
    "vitl14": "vit_large_patch14_dinov2", "vits14_reg": "vit_small_patch14_reg4_dinov2",
    "vitb14_reg": "vit_base_patch14_reg4_dinov2", "vitl14_reg": "vit_large_patch14_reg4_dinov2",
}
_RESNET_ARCHS = {name: name for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")}

# OML's model zoo: checkpoints OML downloads by name (oml_viz never downloads)
OML_ZOO_WEIGHTS = frozenset({
    "vits16_dino", "vits8_dino", "vitb16_dino", "vitb8_dino", "vits14_dinov2", "vits14_reg_dinov2",
    "vitb14_dinov2", "vitb14_reg_dinov2", "vitl14_dinov2", "vitl14_reg_dinov2", "vits16_inshop",
    "vits16_sop", "vits16_cub", "vits16_cars", "resnet50_moco_v2", "resnet18_imagenet1k_v1",
    "resnet34_imagenet1k_v1", "resnet50_imagenet1k_v1", "resnet101_imagenet1k_v1",
    "resnet152_imagenet1k_v1", "vits16_224_mlp_384_inshop",
})

# OML's transform names (oml/registry/transforms.py); all become the model's own preprocessing
_VAL_TRANSFORMS = ("norm_albu", "norm_resize_albu", "norm_resize_albu_clip", "norm_torch",
                   "norm_resize_torch", "norm_resize_hypvit_torch", "unicom_transforms")
_TRAIN_TRANSFORMS = ("augs_albu", "augs_torch", "augs_hypvit_torch", *_VAL_TRANSFORMS)
_MINERS = {"all_triplets": "all", "hard_triplets": "hard"}
_OPTIMIZERS = ("adam", "adamw", "sgd")

# keys that only steer OML's runtime (Lightning trainer, Hydra, its log folders)
_RUNTIME_KEYS = ("hydra", "accelerator", "devices", "precision", "strategy", "find_unused_parameters",
                 "lightning_trainer_extra_args", "logs_root", "logs_folder", "hydra_dir", "postfix",
                 "cache_size", "metric_for_checkpointing", "mode_for_checkpointing", "scheduling",
                 "defaults", "bs_train", "bs_pred", "save_dir")
# our own keys, also accepted in an OML config (OML has no equivalent)
_OURS = ("device", "distance", "checkpoint", "n_worst_queries", "progress", "image_size", "hflip")
_OML_KEYS = ("datasets", "dataset_root", "dataframe_name", "transforms_val", "transforms_train",
             "extractor", "metric_args", "bs_val", "num_workers", "logger", "log_images", "sampler",
             "criterion", "optimizer", "valid_period", "max_epochs", "tags", "seed", "postprocessor")
_MARKERS = ("extractor", "dataframe_name", "datasets", "transforms_val", "bs_val", "max_epochs", "criterion")
_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def is_oml_config(data: Any) -> bool:
    """True for a parsed OML pipeline config: OML's keys and none of our ``dataset`` / ``model``.

    Example:
        >>> is_oml_config({"extractor": {}}), is_oml_config({"dataset": {"dataframe": "df.csv"}})
        (True, False)
    """
    return isinstance(data, Mapping) and any(k in data for k in _MARKERS) and not (
        "dataset" in data or "model" in data)


def oml_arch_to_timm(name: str, arch: str) -> str:
    """The timm name of an OML ``extractor.args.arch``; a timm name passes through.

    Example:
        >>> oml_arch_to_timm("vit", "vits16"), oml_arch_to_timm("resnet", "resnet50")
        ('vit_small_patch16_224', 'resnet50')
    """
    table = _VIT_ARCHS if name == "vit" else _RESNET_ARCHS
    return table.get(arch, arch)


def translate_oml_config(data: Mapping[str, Any], kind: str = "validate",
                         base_dir: str | os.PathLike | None = None,
                         source: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """Our config dict for an OML one, and the notes to show (ignored keys, substitutions).

    Raises:
        ConfigError: every OML key that cannot be translated, each with its key path.
        FileNotFoundError: ``extractor.args.weights`` names no file (an OML zoo name says how
            to pass the checkpoint instead).
    """
    if "dataset" in data or "model" in data:
        raise ConfigError(["the config mixes OML keys (extractor, dataframe_name, ...) with oml_viz keys "
                           "(dataset, model); use one format"], source)
    t = _Translator(data, kind, Path(base_dir) if base_dir is not None else None)
    out = t.run()
    if t.problems:
        raise ConfigError(t.problems, source)
    return out, t.notes


def warn_notes(notes: list[str], source: str | None = None) -> None:
    """Show the translation notes as one warning."""
    if notes:
        where = f" {source}" if source else ""
        warnings.warn(f"OML config{where}:\n  " + "\n  ".join(notes), UserWarning, stacklevel=3)


class _Translator:
    def __init__(self, data: Mapping[str, Any], kind: str, base: Path | None) -> None:
        self.data = dict(data)
        self.kind = kind
        self.base = base
        self.problems: list[str] = []
        self.notes: list[str] = []

    # ---------------------------------------------------------------- helpers
    def section(self, value: Any, path: str, required: tuple[str, ...] = ("name",)) -> dict[str, Any] | None:
        """A ``{name, args}`` block, checked."""
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problems.append(f"{path}: expected a mapping with name and args, got {type(value).__name__}")
            return None
        missing = [k for k in required if k not in value]
        if missing:
            self.problems.append(f"{path}: missing {', '.join(missing)}")
        args = value.get("args") or {}
        if not isinstance(args, Mapping):
            self.problems.append(f"{path}.args: expected a mapping, got {type(args).__name__}")
            args = {}
        return {"name": value.get("name"), "args": dict(args)}

    def resolve(self, value: Any) -> Any:
        """``${key}`` of a top-level scalar is substituted (as OmegaConf would); others are left."""
        if not isinstance(value, str) or "${" not in value:
            return value

        def sub(m: re.Match) -> str:
            ref = self.data.get(m.group(1))
            return str(ref) if isinstance(ref, (str, int, float)) and "${" not in str(ref) else m.group(0)

        out = _INTERPOLATION.sub(sub, value)
        if "${" in out:
            self.notes.append(f"{value!r}: interpolations other than ${{top-level key}} (such as "
                              "${now:...}) are not resolved; kept as text")
        return out

    def number(self, value: Any, path: str) -> Any:
        """OmegaConf reads ``1e-5`` as a float; ``yaml.safe_load`` reads it as text."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                self.problems.append(f"{path}: expected a number, got {value!r}")
        return value

    # ---------------------------------------------------------------- sections
    def run(self) -> dict[str, Any]:
        d = self.data
        known = set(_OML_KEYS) | set(_RUNTIME_KEYS) | set(_OURS)
        for key in d:
            if key not in known:
                self.problems.append(f"{key}: unknown key of an OML config (known: {', '.join(sorted(_OML_KEYS))}; "
                                     f"skipped as OML runtime settings: {', '.join(sorted(_RUNTIME_KEYS))})")
        ignored = [k for k in d if k in _RUNTIME_KEYS]
        if ignored:
            dynamic = [k for k in ignored if "${" in str(d[k])]
            self.notes.append("ignored (they steer OML's runtime, not oml_viz): " + ", ".join(ignored)
                              + (f" (with ${{...}} interpolations: {', '.join(dynamic)})" if dynamic else ""))
        if d.get("postprocessor") is not None:
            self.problems.append("postprocessor: OML's re-ranking postprocessors are not supported; remove it "
                                 "(or set it to null) to validate the extractor's own retrieval")

        out: dict[str, Any] = {"dataset": self.dataset()}
        image_size = self.transforms()
        out["model"] = self.model(image_size)
        if image_size is not None:
            out["image_size"] = image_size
        if "metric_args" in d:
            out["metric_args"] = self.metric_args(d["metric_args"])
        out["logger"] = d["logger"] if d.get("logger") is not None else {"name": "tensorboard",
                                                                          "args": {"save_dir": "."}}
        for oml_key, our_key in (("bs_val", "batch_size_inference"), ("num_workers", "num_workers"),
                                 ("log_images", "log_images"), ("seed", "seed")):
            if oml_key in d:
                out[our_key] = d[oml_key]
        if "tags" in d:
            tags = d["tags"]
            out["tags"] = [self.resolve(t) for t in tags] if isinstance(tags, list) else tags
        for key in _OURS:
            if key in d:
                out[key] = d[key]
        if self.kind == "train":
            self.train_keys(out)
        else:
            extra = [k for k in ("sampler", "criterion", "optimizer", "max_epochs", "valid_period",
                                 "transforms_train") if k in d]
            if extra:
                self.notes.append("ignored by validate (training keys): " + ", ".join(extra))
        return out

    def dataset(self) -> dict[str, Any]:
        d = self.data
        args: dict[str, Any] = {}
        block = self.section(d.get("datasets"), "datasets") if "datasets" in d else None
        if block is not None:
            args = block["args"]
            for key in ("transforms_val", "transforms_train"):
                if key in args:  # later OML versions nest the transforms in the dataset block
                    self.data.setdefault(key, args.pop(key))
            unknown = sorted(set(args) - {"dataset_root", "dataframe_name", "cache_size", "show_dataset_warnings"})
            if unknown:
                self.problems.append(f"datasets.args: unknown key(s) {unknown} (known: dataset_root, dataframe_name)")
        root = args.get("dataset_root", d.get("dataset_root"))
        name = args.get("dataframe_name", d.get("dataframe_name", "df.csv"))
        prefix = "datasets.args." if block is not None else ""
        if root is None:
            self.problems.append(f"{prefix}dataset_root: required key is missing (the folder of the dataframe "
                                 "and the images)")
            return {}
        if not isinstance(root, str) or not isinstance(name, str):
            self.problems.append(f"{prefix}dataset_root / dataframe_name: expected text, got {root!r} / {name!r}")
            return {}
        return {"dataframe": str(Path(root) / name), "dataset_root": root}

    def transforms(self) -> int | None:
        """``im_size`` of ``transforms_val`` (the model's own timm preprocessing runs at it)."""
        block = self.section(self.data.get("transforms_val"), "transforms_val")
        if block is None:
            return None
        if block["name"] not in _VAL_TRANSFORMS:
            self.problems.append(f"transforms_val.name: {block['name']!r} is not an OML transform "
                                 f"(known: {', '.join(_VAL_TRANSFORMS)})")
            return None
        size = block["args"].get("im_size")
        if size is None:
            return None
        try:
            size = check_int("transforms_val.args.im_size", size, low=8)
        except InputError as e:
            self.problems.append(str(e))
            return None
        self.notes.append(f"transforms_val {block['name']!r}: the model's own timm preprocessing "
                          f"(its mean/std) at {size} px")
        return size

    def model(self, image_size: int | None) -> dict[str, Any]:
        block = self.section(self.data.get("extractor"), "extractor")
        if block is None:
            self.problems.append("extractor: required key is missing ({name: vit | resnet, args: {arch, weights}})")
            return {}
        name, args = block["name"], dict(block["args"])
        if name not in ("vit", "resnet"):
            self.problems.append(f"extractor.name: {name!r} is not supported; use vit or resnet")
            return {}
        arch = args.pop("arch", "vits16" if name == "vit" else "resnet50")
        if not isinstance(arch, str):
            self.problems.append(f"extractor.args.arch: expected text, got {arch!r}")
            return {}
        model: dict[str, Any] = {"kind": name, "arch": oml_arch_to_timm(name, arch)}
        model["normalise_features"] = args.pop("normalise_features", False)  # OML's default
        kwargs = args.pop("timm_kwargs", None) or {}  # oml_viz's addition: timm.create_model kwargs
        if not isinstance(kwargs, Mapping):
            self.problems.append(f"extractor.args.timm_kwargs: expected a mapping, got {kwargs!r}")
            kwargs = {}
        kwargs = dict(kwargs)
        model["weights"] = self.weights(args.pop("weights", None))
        if args.pop("use_multi_scale", False):
            self.problems.append("extractor.args.use_multi_scale: multi-scale inference is not supported; "
                                 "set it to false")
        gem_p = args.pop("gem_p", None)
        if gem_p not in (None, 1, 1.0):
            self.notes.append(f"extractor.args.gem_p {gem_p}: timm's average pooling is used")
        if args.pop("remove_fc", True) is False:
            self.problems.append("extractor.args.remove_fc: false is not supported (extractors return "
                                 "pooled features)")
        if args:
            self.problems.append(f"extractor.args: unknown key(s) {sorted(args)} (known: arch, weights, "
                                 "normalise_features, use_multi_scale, gem_p, remove_fc, timm_kwargs)")
        if name == "vit" and image_size is not None:
            kwargs.setdefault("img_size", image_size)  # a ViT is built for the transform's size
        model["kwargs"] = kwargs
        return model

    def weights(self, value: Any) -> str | None:
        if value is None or value == "pretrained":
            return value
        if not isinstance(value, str):
            self.problems.append(f"extractor.args.weights: expected a file path or null, got {value!r}")
            return None
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base is not None:
            path = self.base / path
        if path.is_file():
            return str(path)
        if value in OML_ZOO_WEIGHTS or ("/" not in value and "." not in value):
            raise InputFileNotFoundError(
                f"extractor.args.weights: {value!r} is a name in OML's model zoo, which oml_viz does not "
                "download (it works offline). Download the checkpoint once (with OML: "
                f"ViTExtractor.from_pretrained({value!r}) / ResnetExtractor.from_pretrained({value!r}) store it "
                "under ~/.cache/oml), then pass the file: weights: /path/to/the.ckpt (or null for random init)")
        raise InputFileNotFoundError(f"extractor.args.weights: file not found: {path} (relative paths start "
                                     "at the config file's folder; null = random init)")

    def metric_args(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value  # our schema names the problem
        out = dict(value)
        if "pfc_variance" in out:
            warnings.warn("metric_args.pfc_variance: OML's misspelling of pcf_variance, read as pcf_variance",
                          UserWarning, stacklevel=4)
            if "pcf_variance" in out:
                self.problems.append("metric_args: both pfc_variance and pcf_variance given; keep pcf_variance")
            out["pcf_variance"] = out.pop("pfc_variance")
        for key in ("metrics_to_exclude_from_visualization", "cmc_top_k", "precision_top_k", "map_top_k",
                    "fmr_vals", "pcf_variance"):
            if isinstance(out.get(key), tuple):
                out[key] = list(out[key])
        return out

    def train_keys(self, out: dict[str, Any]) -> None:
        d = self.data
        if "max_epochs" in d:
            out["epochs"] = d["max_epochs"]
        if "valid_period" in d:
            out["valid_period"] = d["valid_period"]
        train_tf = self.section(d.get("transforms_train"), "transforms_train")
        if train_tf is not None:
            if train_tf["name"] not in _TRAIN_TRANSFORMS:
                self.problems.append(f"transforms_train.name: {train_tf['name']!r} is not an OML transform "
                                     f"(known: {', '.join(_TRAIN_TRANSFORMS)})")
            else:
                augment = train_tf["name"].startswith("augs")
                out.setdefault("hflip", augment)
                self.notes.append(f"transforms_train {train_tf['name']!r}: "
                                  + ("random horizontal flips" if augment else "no augmentation")
                                  + " with the model's own preprocessing")
        sampler = self.section(d.get("sampler"), "sampler")
        if "sampler" in d and sampler is None:
            self.problems.append("sampler: null (random batches) is not supported; use {name: balance, args: "
                                 "{n_labels, n_instances}}")
        elif sampler is not None:
            if sampler["name"] != "balance":
                self.problems.append(f"sampler.name: {sampler['name']!r} is not supported; use balance")
            out["sampler"] = sampler["args"]
        criterion = self.section(d.get("criterion"), "criterion")
        if criterion is not None:
            out["loss"] = self.criterion(criterion)
        optimizer = self.section(d.get("optimizer"), "optimizer")
        if optimizer is not None:
            if optimizer["name"] not in _OPTIMIZERS:
                self.problems.append(f"optimizer.name: {optimizer['name']!r} is not supported; use one of "
                                     f"{', '.join(_OPTIMIZERS)}")
            opt: dict[str, Any] = {"name": optimizer["name"]}
            args = optimizer["args"]
            for key in ("lr", "weight_decay"):
                if key in args:
                    opt[key] = self.number(args.pop(key), f"optimizer.args.{key}")
            others = sorted(set(args) - {"momentum", "betas", "eps", "nesterov", "amsgrad"})
            if others:
                self.problems.append(f"optimizer.args: unknown key(s) {others} (known: lr, weight_decay)")
            elif args:
                self.notes.append(f"optimizer.args {sorted(args)}: the optimizer's defaults are used")
            out["optimizer"] = opt

    def criterion(self, block: dict[str, Any]) -> dict[str, Any]:
        if block["name"] != "triplet_with_miner":
            self.problems.append(f"criterion.name: {block['name']!r} is not supported; use triplet_with_miner")
            return {}
        args = dict(block["args"])
        loss: dict[str, Any] = {"margin": self.number(args.pop("margin", None), "criterion.args.margin")}
        if args.pop("reduction", "mean") != "mean":
            self.problems.append("criterion.args.reduction: only mean is supported")
        args.pop("need_logs", None)  # the loss's statistics are always logged
        miner = self.section(args.pop("miner", None), "criterion.args.miner")
        if miner is not None:
            if miner["name"] in _MINERS:
                loss["miner"] = _MINERS[miner["name"]]
            else:
                loss["miner"] = "all"
                self.notes.append(f"criterion.args.miner {miner['name']!r}: not available, all triplets of "
                                  "each batch are used (all_triplets)")
        if args:
            self.problems.append(f"criterion.args: unknown key(s) {sorted(args)} (known: margin, reduction, "
                                 "need_logs, miner)")
        return loss
