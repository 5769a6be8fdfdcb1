"""Each library internal that oml_viz relies on (gathered in ``oml_viz.compat``) still behaves as used.

These tests are meant to fail loudly, naming the internal, when an upgrade moves or changes it.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from oml_viz.compat import gradcam as gradcam_compat
from oml_viz.compat import torch as torch_compat
from oml_viz.compat.lightning import detach_wandb_run, mlflow_tracking_uri, wandb_run
from oml_viz.compat.matplotlib import PixelImage

torch.set_num_threads(2)


# --- torch: every public way to hang a hook lands in a table that hook_tables() sees ----------------
def _hook_ids(module: nn.Module) -> set[int]:
    return {k for _, table in torch_compat.hook_tables(module) for k in table}


REGISTRATIONS = {
    "forward": lambda m, f: m.register_forward_hook(lambda *a: f()),
    "forward_kwargs_always": lambda m, f: m.register_forward_hook(lambda *a: f(), with_kwargs=True, always_call=True),
    "forward_pre": lambda m, f: m.register_forward_pre_hook(lambda *a: f()),
    "forward_pre_kwargs": lambda m, f: m.register_forward_pre_hook(lambda *a: f(), with_kwargs=True),
    "full_backward": lambda m, f: m.register_full_backward_hook(lambda *a: f()),
    "full_backward_pre": lambda m, f: m.register_full_backward_pre_hook(lambda *a: f()),
}


@pytest.mark.parametrize("kind", sorted(REGISTRATIONS))
def test_torch_hook_tables_hold_every_hook_kind(kind):
    lin = nn.Linear(3, 3)
    before = _hook_ids(lin)
    calls = []
    handle = REGISTRATIONS[kind](lin, lambda: calls.append(1))
    added = _hook_ids(lin) - before
    assert handle.id in added, f"torch moved the {kind} hooks out of {torch_compat.HOOK_TABLES}"
    lin(torch.ones(1, 3, requires_grad=True)).sum().backward()
    assert calls, f"the {kind} hook did not run"
    # deleting the id from the tables (what preserved_state does) really switches the hook off
    for _, table in torch_compat.hook_tables(lin):
        table.pop(handle.id, None)
    calls.clear()
    lin(torch.ones(1, 3, requires_grad=True)).sum().backward()
    assert not calls, f"a {kind} hook deleted from its table still ran"


def test_torch_hook_tables_exist_on_plain_modules():
    names = [n for n, _ in torch_compat.hook_tables(nn.Linear(1, 1))]
    assert {"_forward_hooks", "_forward_pre_hooks", "_backward_hooks"} <= set(names)


# --- pytorch-grad-cam ---------------------------------------------------------------------------------
def test_gradcam_release_hooks_and_uses_gradients():
    pgc = pytest.importorskip("pytorch_grad_cam")
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    before = _hook_ids(net[0])
    cam = pgc.GradCAM(model=net, target_layers=[net[0]])
    assert _hook_ids(net[0]) - before, "grad-cam no longer hooks the target layer at construction"
    gradcam_compat.release_hooks(cam)
    assert _hook_ids(net[0]) == before, "cam.activations_and_grads.release() left hooks behind"
    assert gradcam_compat.uses_gradients(cam) is True
    score = pgc.ScoreCAM(model=net, target_layers=[net[0]])
    assert gradcam_compat.uses_gradients(score) is False, "ScoreCAM no longer says uses_gradients=False"
    gradcam_compat.release_hooks(score)


# --- matplotlib: the renderer still calls make_image with the signature PixelImage implements ---------
def test_matplotlib_pixel_image_is_drawn_pixel_for_pixel_and_scaled_for_other_sizes(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    fig = Figure(figsize=(0.4, 0.3), dpi=100)
    canvas = FigureCanvasAgg(fig)
    img = PixelImage(fig, rgba)
    calls = []
    original = img.make_image
    img.make_image = lambda *a, **k: calls.append(1) or original(*a, **k)  # type: ignore[method-assign]
    fig.images.append(img)
    canvas.draw()
    assert calls, "matplotlib no longer calls FigureImage.make_image"
    np.testing.assert_array_equal(np.asarray(canvas.buffer_rgba()), rgba)
    fig.savefig(tmp_path / "x2.png", dpi=200)
    big = np.asarray(Image.open(tmp_path / "x2.png").convert("RGB"))
    assert big.shape == (60, 80, 3)
    expected = np.asarray(Image.fromarray(rgba, "RGBA").resize((80, 60), Image.Resampling.LANCZOS))[..., :3]
    assert np.abs(big.astype(int) - expected.astype(int)).mean() < 2


# --- Lightning loggers ---------------------------------------------------------------------------------
def test_lightning_wandb_logger_internals(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    logger = WandbLogger(project="compat", save_dir=str(tmp_path), offline=True)
    assert wandb_run(logger) is None, "WandbLogger._experiment is not None before the first use"
    assert isinstance(logger._wandb_init, dict), "WandbLogger._wandb_init is no longer the init kwargs dict"

    class Run:
        id = "abc123"

    logger._experiment = Run()
    assert detach_wandb_run(logger, resume_id="abc123").id == "abc123"
    assert wandb_run(logger) is None
    assert logger.version == "abc123", "WandbLogger.version no longer reads _id"
    assert logger._wandb_init["id"] == "abc123" and logger._wandb_init["resume"] == "allow"


def test_lightning_mlflow_logger_keeps_its_tracking_uri(tmp_path):
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert mlflow_tracking_uri(MLFlowLogger(tracking_uri=uri, save_dir=str(tmp_path))) == uri


# --- neptune ---------------------------------------------------------------------------------------------
def test_neptune_local_run_id_names_the_offline_folder(tmp_path, monkeypatch):
    neptune = pytest.importorskip("neptune")
    from oml_viz.compat.neptune import local_run_id

    monkeypatch.chdir(tmp_path)
    run = neptune.init_run(mode="offline", project="ws/compat", capture_hardware_metrics=False,
                           capture_stdout=False, capture_stderr=False, capture_traceback=False,
                           git_ref=False, source_files=[])
    try:
        rid = local_run_id(run)
    finally:
        run.stop()
    folders = [p.name for p in (tmp_path / ".neptune").rglob("run__*")]
    assert rid and any(rid in f for f in folders), f"Run._id {rid!r} does not name the offline folder {folders}"


# --- wandb -------------------------------------------------------------------------------------------------
def test_wandb_netrc_reader_reads_the_api_key(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from oml_viz.compat.wandb import netrc_has_key, netrc_reader

    key = "k" * 40
    rc = tmp_path / "netrc"
    rc.write_text(f"machine api.example.test\n  login user\n  password {key}\n")
    rc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(rc))
    assert netrc_reader()(host="https://api.example.test") == key  # type: ignore[operator]
    assert netrc_has_key("https://api.example.test")
    assert not netrc_has_key("https://other.example.test")
