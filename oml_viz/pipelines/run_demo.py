"""``oml-viz demo``: the whole story on the demo data, written to ``demo_output/``.

1. :func:`oml_viz.pipelines.demo.demo_assets`: the dataset and the trained ViT and CNN (trained
   now, or reused from ``<work_dir>/checkpoints``), training logged to TensorBoard;
2. retrieval with the trained ViT on the validation split, and with the same ViT at its
   random initialisation, so the printout shows what training bought;
3. logs the metrics, the worst queries and the explanations to TensorBoard (``<work_dir>/logs``);
4. writes ``metrics.csv``, ``worst_queries.png``, ``attention.png``, ``gradcam.png``,
   ``compare.png`` (trained against random-init ViT, query by query), ``confusions.png`` (the
   label pairs the trained ViT mixes up) and ``report.html`` (the widgets' dashboard as a static
   page, with its Compare and Confusions tabs) into ``work_dir``.

Example:
    ``run_demo("demo_output", quick=True)`` (a few minutes on a CPU; ``tests/test_demo.py`` runs
    it) is what ``oml-viz demo --quick`` calls:

    >>> from oml_viz.pipelines.cli import build_parser
    >>> args = build_parser().parse_args(["demo", "--quick", "--work-dir", "demo_output"])
    >>> args.work_dir, args.quick, args.force_retrain
    ('demo_output', True, False)
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oml_viz.engine.result import OVERALL
from oml_viz.pipelines.demo import (
    DemoAssets,
    _key,
    cpu_threads_for_load,
    demo_assets,
    demo_recipe,
)

__all__ = ["NOTEBOOK", "DemoSummary", "planted_findings", "random_init_cmc1", "random_init_embeddings", "run_demo"]

NOTEBOOK = "notebooks/visualization.ipynb"
_METRICS = {"cmc_top_k": (1, 5), "precision_top_k": (5,), "map_top_k": (5,), "fmr_vals": (0.1,),
            "pcf_variance": (0.5,)}
_WORST_METRIC = "map/5"
_N_EXPLAINED = 4
DEMO_ISSUE_K = 30  # neighbours per item for the demo's label issues (see planted_findings)


@dataclass
class DemoSummary:
    """What the demo measured and wrote."""

    metrics: pd.DataFrame
    trained_cmc1: float
    random_cmc1: float
    files: dict[str, Path]
    work_dir: Path
    trained_now: list[str] = field(default_factory=list)
    planted: dict[str, Any] = field(default_factory=dict)  # what planted_findings() found


def _cmc1(embeddings: np.ndarray, rows: pd.DataFrame) -> float:
    from oml_viz.engine import retrieve

    res = retrieve(embeddings, rows["label"].tolist(), rows["is_query"].to_numpy(bool),
                   rows["is_gallery"].to_numpy(bool), top_n=1, progress=False)
    return float(res.metrics(cmc_top_k=(1,), precision_top_k=(), map_top_k=())["cmc/1"][OVERALL])


def random_init_cmc1(assets: DemoAssets, quick: bool, progress: bool = True) -> float:
    """CMC@1 of the demo ViT at the initialisation training started from (same seed), cached."""
    recipe = demo_recipe(quick)
    cache = assets.work_dir / "checkpoints" / f"vit-{_key(recipe, 'vit')}.random_cmc1.json"
    if cache.is_file():
        try:
            return float(json.loads(cache.read_text())["cmc/1"])
        except (ValueError, KeyError):
            pass  # a broken cache is recomputed
    emb = random_init_embeddings(assets, quick, progress)
    value = _cmc1(emb, assets.df)
    cache.write_text(json.dumps({"cmc/1": value}))
    return value


def random_init_embeddings(assets: DemoAssets, quick: bool, progress: bool = True) -> np.ndarray:
    """The demo ViT's validation embeddings at the initialisation training started from (same
    seed): the baseline the demo compares the trained ViT with. Cached next to the checkpoints."""
    recipe = demo_recipe(quick)
    cache = assets.work_dir / "checkpoints" / f"vit-{_key(recipe, 'vit')}.random_emb.npy"
    if cache.is_file():
        emb = np.load(cache)
        if emb.shape[0] == len(assets.df):
            return emb
    from oml_viz.pipelines.config import ModelConfig
    from oml_viz.pipelines.steps import build_extractor, seed_everything

    seed_everything(recipe["common"]["seed"])  # the train pipeline seeds the same way before building
    m = recipe["vit"]
    fresh = build_extractor(ModelConfig(arch=m["arch"], kind=m["kind"], normalise_features=m["normalise_features"],
                                        kwargs=m["kwargs"]))
    emb = fresh.extract(assets.df, batch_size=128, progress=progress)
    tmp = cache.with_name(cache.name + ".tmp.npy")
    np.save(tmp, emb)
    os.replace(tmp, cache)
    return emb


def _comparison(assets: DemoAssets, res: Any, quick: bool, progress: bool) -> tuple[Any, str]:
    """(trained ViT against its random init, the kind of change to show: regressed when any)."""
    from oml_viz.analysis import compare
    from oml_viz.engine import retrieve

    rows = assets.df
    base = retrieve(random_init_embeddings(assets, quick, progress), rows["label"].tolist(),
                    rows["is_query"].to_numpy(bool), rows["is_gallery"].to_numpy(bool), top_n=10,
                    categories=rows["category"].tolist(), progress=False)
    cmp = compare(base, res, names=("random init", "trained"))
    kind = "regressed" if len(cmp.changed(_WORST_METRIC, "regressed", 1)) else "improved"
    return cmp, kind


def _explanation_grid(images: list[np.ndarray], overlays: list[np.ndarray], ids: list[int], title: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.0 * len(images), 4.2), dpi=100)
    axes = fig.subplots(2, len(images), squeeze=False)
    for j, (img, ov, item) in enumerate(zip(images, overlays, ids)):
        axes[0, j].imshow(img)
        axes[0, j].set_title(f"item {item}", fontsize=9)
        axes[1, j].imshow(ov)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run_demo(work_dir: str | os.PathLike = "demo_output", quick: bool = False, force_retrain: bool = False,
             progress: bool = True, echo: Callable[[str], None] | None = print) -> DemoSummary:
    """Run the demo (see the module docstring) and return a :class:`DemoSummary`."""
    with cpu_threads_for_load():
        return _run_demo(work_dir, quick, force_retrain, progress, echo)


def _run_demo(work_dir: str | os.PathLike, quick: bool, force_retrain: bool, progress: bool,
              echo: Callable[[str], None] | None) -> DemoSummary:
    from oml_viz.data.sources import ImageSource
    from oml_viz.engine import retrieve
    from oml_viz.loggers import create_logger
    from oml_viz.pipelines.steps import flat_table, format_table
    from oml_viz.render import plot_compared_queries, plot_confusions, plot_worst_queries

    say = echo or (lambda s: None)
    work = Path(work_dir).expanduser().resolve()
    say(f"oml-viz demo: work dir {work}" + (" (quick)" if quick else ""))
    assets = demo_assets(work, quick, force_retrain=force_retrain, progress=progress)
    say("models: " + (f"trained now: {', '.join(assets.trained_now)}" if assets.trained_now
                      else "reused checkpoints (--force-retrain trains again)"))
    rows = assets.df

    res = retrieve(assets.embeddings, rows["label"].tolist(), rows["is_query"].to_numpy(bool),
                   rows["is_gallery"].to_numpy(bool), top_n=10, categories=rows["category"].tolist(),
                   progress=False)
    table = res.metrics(**_METRICS)
    trained = float(table.loc[OVERALL, "cmc/1"])
    random = random_init_cmc1(assets, quick, progress)

    files: dict[str, Path] = {"metrics": work / "metrics.csv"}
    table.to_csv(files["metrics"], index_label="category")

    worst = [int(i) for i in res.worst_queries(_WORST_METRIC, _N_EXPLAINED)]
    source = ImageSource(rows, assets.dataset_root)
    images = [source.image(i) for i in worst]
    figures = {
        "worst_queries": plot_worst_queries(res, rows, metric=_WORST_METRIC, n_queries=5),
        "attention": _explanation_grid(images, [assets.vit.draw_attention(im) for im in images], worst,
                                       "ViT attention (last block, CLS -> patches, mean of heads), worst queries"),
        "gradcam": _explanation_grid(images, [assets.cnn.draw_gradcam(im) for im in images], worst,
                                     "Grad-CAM of the CNN's embedding (layer4), worst queries"),
    }
    cmp, kind = _comparison(assets, res, quick, progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-ground-truth note: the metrics table gave it
        cmp_table = cmp.table(metrics=("cmc/1", _WORST_METRIC), seed=0)
    figures["compare"] = plot_compared_queries(cmp, rows, kind=kind, metric=_WORST_METRIC, n_queries=5)
    figures["confusions"] = plot_confusions(res, k=5, top=20)
    for name, fig in figures.items():
        files[name] = work / f"{name}.png"
        fig.savefig(files[name], format="png")

    logger = create_logger({"name": "tensorboard", "args": {"save_dir": str(work / "logs"), "name": "demo_validate"}})
    status = "failed"
    try:
        logger.log_pipeline_info({"demo": demo_recipe(quick), "metric_args": _METRICS}, dataframe=rows,
                                 tags=["demo", "validate"])
        logger.log_metrics({**flat_table(table), f"random_init/{OVERALL}/cmc/1": random,
                            **{f"compare/{k}": v for k, v in flat_table(cmp_table).items()}}, step=0)
        for name, fig in figures.items():
            logger.log_figure(fig, name if name != "worst_queries" else f"worst_queries/{_WORST_METRIC}", step=0)
        status = "success"
    finally:
        logger.finalize(status)

    files["report"] = _write_report(assets, res, work / "report.html", baseline=cmp.a)
    planted = planted_findings(assets, progress)

    say("")
    say(format_table(table))
    say("")
    say(f"CMC@1  trained ViT: {trained:.3f}   random-init ViT (same architecture, same data): {random:.3f}")
    ci = cmp_table.loc[OVERALL]
    say(f"{_WORST_METRIC}  trained minus random init: {ci[f'{_WORST_METRIC}/delta']:+.3f}  95% interval "
        f"[{ci[f'{_WORST_METRIC}/ci_low']:+.3f}, {ci[f'{_WORST_METRIC}/ci_high']:+.3f}], "
        f"p = {ci[f'{_WORST_METRIC}/p_value']:.3g}; {len(cmp.changed(_WORST_METRIC, 'regressed', None))} queries "
        "got worse")
    if planted:
        say(f"planted data issues: {planted['wrong_found']} of {planted['wrong_labels']} wrong labels are among the "
            f"{planted['wrong_labels']} most suspicious items (find_label_issues, k={DEMO_ISSUE_K}; "
            f"{planted['wrong_by_chance']:.1f} by chance); {planted['leaks_found']} of "
            f"{planted['leaks']} train/validation near-duplicates found (find_duplicates: {planted['pairs']} pairs "
            f"under the automatic cut {planted['threshold']:.3g}, {planted['cross_split']} across splits)")
    say("")
    say("written:")
    for name, path in files.items():
        say(f"  {name:14s} {path}")
    say(f"  {'tensorboard':14s} {work / 'logs'}  (view: {_venv_bin('tensorboard')} --logdir {shlex.quote(str(work / 'logs'))})")
    say("")
    say("open the notebook in JupyterLab:")
    say(f"  OML_VIZ_WORK_DIR={shlex.quote(str(work))} {_venv_bin('jupyter')} lab {NOTEBOOK}")
    return DemoSummary(table, trained, random, files, work, assets.trained_now, planted)


def planted_findings(assets: DemoAssets, progress: bool = True) -> dict[str, Any]:
    """How many of the demo dataset's planted wrong labels and train/validation near-duplicates
    (``true_label`` / ``leak_of`` columns, see :mod:`oml_viz.data.demo`) the analysis finds.

    Wrong labels: those among the most suspicious items of :func:`oml_viz.find_label_issues` on the
    validation embeddings (as many as were planted; k = 30 neighbours). Leaks: planted pairs among the pairs of
    :func:`oml_viz.find_duplicates` (automatic threshold) over train and validation embeddings.
    Empty for a dataset without those columns.
    """
    from oml_viz.analysis import find_duplicates, find_label_issues

    rows, full = assets.df, assets.full_df
    if "true_label" not in rows.columns or "leak_of" not in full.columns:
        return {}
    wrong = np.flatnonzero(rows["label"].to_numpy() != rows["true_label"].to_numpy())
    # k=30: the demo ViT's neighbours rarely share the class (CMC@1 ~0.25); with k=10 the planted
    # labels hardly stand out (1 of 29 found on the full demo, 7 with k=30)
    issues = find_label_issues(assets.embeddings, rows["label"], k=min(DEMO_ISSUE_K, len(rows) - 1),
                               progress=False)
    top = set(issues.index[:len(wrong)].tolist())
    is_val = (full["split"] == "validation").to_numpy()
    train_emb = assets.vit.extract(full[~is_val], batch_size=128, dataset_root=assets.dataset_root, progress=progress)
    emb = np.empty((len(full), assets.embeddings.shape[1]), dtype=np.float32)
    emb[is_val], emb[~is_val] = assets.embeddings, train_emb
    dups = find_duplicates(emb, splits=full["split"], labels=full["label"], progress=False)
    leak_of = full["leak_of"].to_numpy()
    planted = {(min(int(s), int(t)), max(int(s), int(t))) for t, s in enumerate(leak_of) if s >= 0}
    found = set(zip(dups["id_a"].tolist(), dups["id_b"].tolist()))
    return {"wrong_labels": len(wrong), "wrong_found": len(top & set(wrong.tolist())),
            "wrong_by_chance": len(wrong) ** 2 / max(len(rows), 1),
            "leaks": len(planted), "leaks_found": len(planted & found), "pairs": len(dups),
            "cross_split": int(dups["cross_split"].sum()), "threshold": float(dups.attrs["threshold"])}


def _write_report(assets: DemoAssets, res: Any, path: Path, baseline: Any = None) -> Path:
    """The widgets' dashboard as a static HTML page (every tab's current view)."""
    from oml_viz.widgets import Dashboard

    dash = Dashboard(res, assets.df, model=assets.vit, cnn=assets.cnn, metric=_WORST_METRIC, background=False,
                     baseline=baseline, names=("random init", "trained"))
    try:
        return dash.save_html(path, title="oml_viz demo report")
    finally:
        dash.close()


def _venv_bin(name: str) -> str:
    """``.venv/bin/<name>`` when this Python is that venv's (as after ``make demo``), else ``<name>``."""
    exe = Path(sys.executable)
    here = exe.parent / name
    try:
        rel = here.relative_to(Path.cwd())
    except ValueError:
        return str(here) if here.exists() else name
    return str(rel) if here.exists() else name
