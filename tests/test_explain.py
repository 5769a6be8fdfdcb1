"""Explainers on planted-signal models made of real timm layers.

The ViTs below are timm ``VisionTransformer`` / ``VisionTransformerDistilled`` with hand-set
weights: patch tokens carry the patch's mean red (dim 0) and green (dim 2) and a constant
(dim 1); head 0's query is a constant that matches keys by their red value, so every token
(CLS included) attends to red patches; head 1 attends uniformly. The embedding therefore
depends on the red region. The CNN is timm layers (conv, BatchNormAct2d, adaptive pool)
whose channels detect red and green. Maps must peak where the signal was planted.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from timm.layers import BatchNormAct2d, SelectAdaptivePool2d, create_conv2d
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

import oml_viz as ov
from oml_viz.explain import (
    CAM_METHODS,
    attention_map,
    capture_state,
    draw_attention,
    draw_gradcam,
    explain_pair,
    gradcam_map,
    gradcam_maps,
    overlay_heatmap,
)

torch.set_num_threads(2)
D, HEADS = 16, 2
RED, GREEN = (255, 0, 0), (0, 255, 0)


def plant_vit(model: nn.Module, patch: int, planted_blocks=(0,), strength: float = 20.0) -> nn.Module:
    hd = D // HEADS
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
        proj = model.patch_embed.proj
        proj.weight[0, 0] = 1.0 / (patch * patch)  # dim 0: mean (normalised) red of the patch
        proj.weight[2, 1] = 1.0 / (patch * patch)  # dim 2: mean green
        proj.bias[1] = 1.0                          # dim 1: constant, so LayerNorm keeps the red level
        for b, blk in enumerate(model.blocks):
            attn = blk.attn
            attn.qkv.weight[2 * D:3 * D] = torch.eye(D)  # v = token
            attn.proj.weight.copy_(torch.eye(D))
            if b in planted_blocks:
                attn.qkv.bias[0] = strength        # head 0: the same query for every token ...
                attn.qkv.weight[D + 0, 0] = 1.0     # ... matched against the key's red level
            assert hd >= 1
    return model.eval()


def make_vit(img_size=64, patch=8, depth=1, cls=VisionTransformer, planted_blocks=(0,), **kw) -> nn.Module:
    model = cls(img_size=img_size, patch_size=patch, embed_dim=D, depth=depth, num_heads=HEADS, mlp_ratio=1.0,
                num_classes=0, qkv_bias=True, **kw)
    return plant_vit(model, patch, planted_blocks)


class PlantedCNN(nn.Module):
    """timm layers: a stride-8 conv detecting red (channel 0) and green (channel 1), BN + ReLU, avg pool."""

    def __init__(self):
        super().__init__()
        self.stem = create_conv2d(3, 2, kernel_size=8, stride=8, padding=0, bias=True)
        self.layer4 = nn.Sequential(BatchNormAct2d(2, act_layer=nn.ReLU))
        self.global_pool = SelectAdaptivePool2d(pool_type="avg", flatten=True)
        self.num_features = 2
        with torch.no_grad():
            w = torch.zeros(2, 3, 8, 8)
            w[0, 0], w[0, 1], w[0, 2] = 1.0, -0.5, -0.5  # red minus the others
            w[1, 1], w[1, 0], w[1, 2] = 1.0, -0.5, -0.5  # green minus the others
            self.stem.weight.copy_(w / 64.0)
            self.stem.bias.zero_()

    def forward(self, x):
        return self.global_pool(self.layer4(self.stem(x)))


def canvas(h, w, *squares):
    img = np.full((h, w, 3), 0, np.uint8)
    for (y, x, s, colour) in squares:
        img[y:y + s, x:x + s] = colour
    return img


def assert_peak_in(heat, y, x, s, margin=2):
    assert heat.dtype == np.float32 and heat.min() >= 0 and heat.max() <= 1
    iy, ix = np.unravel_index(np.argmax(heat), heat.shape)
    assert y - margin <= iy < y + s + margin and x - margin <= ix < x + s + margin, (iy, ix, (y, x, s))
    inside = np.zeros(heat.shape, bool)
    inside[y:y + s, x:x + s] = True
    assert heat[inside].mean() > 3 * heat[~inside].mean() + 0.05


# --- attention ------------------------------------------------------------------------------

@pytest.mark.parametrize("y,x", [(0, 0), (40, 44), (20, 9)])
def test_attention_peaks_at_planted_region(y, x):
    model = make_vit()
    heat = attention_map(model, canvas(64, 64, (y, x, 16, RED)))
    assert heat.shape == (64, 64)
    assert_peak_in(heat, y, x, 16)


@pytest.mark.parametrize("name,build,img_size", [
    ("registers", lambda: make_vit(reg_tokens=4), (64, 64)),
    ("distilled", lambda: make_vit(cls=VisionTransformerDistilled), (64, 64)),
    ("patch14", lambda: make_vit(img_size=56, patch=14), (56, 56)),
    ("patch16_dynamic", lambda: make_vit(img_size=64, patch=16, dynamic_img_size=True), (64, 64)),
    ("no_cls_avg_pool", lambda: make_vit(class_token=False, global_pool="avg"), (64, 64)),
])
def test_attention_variants_and_non_square_images(name, build, img_size):
    model = build()
    assert model.num_prefix_tokens == {"registers": 5, "distilled": 2, "no_cls_avg_pool": 0}.get(name, 1)
    img = canvas(72, 120, (40, 80, 24, RED))  # not square, not a patch multiple
    heat = attention_map(model, img)
    assert heat.shape == (72, 120)
    assert_peak_in(heat, 40, 80, 24, margin=6)


def test_dynamic_model_keeps_aspect():
    model = make_vit(img_size=64, patch=8, dynamic_img_size=True)
    img = canvas(40, 160, (8, 136, 16, RED))  # a 4:1 image: a square input would squash the region
    assert_peak_in(attention_map(model, img), 8, 136, 16, margin=6)


def test_head_selection_and_rollout_see_different_things():
    model = make_vit(depth=2, planted_blocks=(0,))  # block 1 attends uniformly
    img = canvas(64, 64, (8, 40, 16, RED))
    assert_peak_in(attention_map(model, img, block=0, head=0), 8, 40, 16)
    assert_peak_in(attention_map(model, img, block=0, head="max"), 8, 40, 16)
    assert np.all(attention_map(model, img, block=0, head=1) == 0)  # uniform head: no information
    assert np.all(attention_map(model, img, block=-1) == 0)
    assert_peak_in(attention_map(model, img, block=0), 8, 40, 16)
    assert_peak_in(attention_map(model, img, rollout=True), 8, 40, 16)


def test_attention_bad_arguments_are_named():
    model = make_vit()
    img = canvas(64, 64)
    with pytest.raises(ValueError, match="head"):
        attention_map(model, img, head=7)
    with pytest.raises(ValueError, match="block"):
        attention_map(model, img, block=3)
    with pytest.raises(ValueError, match="model"):
        attention_map(PlantedCNN(), img)
    with pytest.raises(TypeError, match="image"):
        attention_map(model, torch.zeros(3, 64, 64))


def _fused(model):
    return [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]


def test_attention_restores_model_state_even_on_error():
    model = make_vit(depth=2).train()
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = True
    model.blocks[0].register_forward_hook(lambda *a: None)  # the user's own hook stays
    before = capture_state(model)
    x = torch.randn(2, 3, 64, 64)
    model.eval()
    ref = model(x)
    model.train()
    attention_map(model, canvas(64, 64, (0, 0, 16, RED)), rollout=True)
    assert capture_state(model) == before and model.training and all(_fused(model))

    def boom(*_):
        raise RuntimeError("planted failure")

    h = model.blocks[1].register_forward_hook(boom)
    before = capture_state(model)
    with pytest.raises(RuntimeError, match="planted failure"):
        attention_map(model, canvas(64, 64))
    assert capture_state(model) == before and all(_fused(model))
    h.remove()
    model.eval()
    torch.testing.assert_close(model(x), ref)  # same function as before


@pytest.mark.parametrize("arch,kw", [
    ("vit_small_patch14_reg4_dinov2", {"img_size": 56}),      # registers, layer scale, patch 14
    ("deit_tiny_distilled_patch16_224", {"img_size": 64}),    # CLS + distillation token
    ("eva02_tiny_patch14_224", {"img_size": 56}),             # EVA attention with RoPE, avg pool
    ("vit_base_patch16_siglip_224", {"img_size": 64, "embed_dim": 64, "num_heads": 2}),  # no CLS, attention pool
])
def test_real_timm_vits_give_maps_and_keep_state(arch, kw):
    model = timm.create_model(arch, pretrained=False, num_classes=0, depth=2, **kw).train()
    before = capture_state(model)
    img = np.random.default_rng(0).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    for heat in (attention_map(model, img), attention_map(model, img, rollout=True, head="max"),
                 gradcam_map(model, img), explain_pair(model, img, img[:, :40]).gallery_map):
        assert heat.dtype == np.float32 and heat.shape[0] == 50 and heat.std() > 0
    assert capture_state(model) == before and model.training


# --- Grad-CAM -------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam"])
def test_gradcam_methods_peak_at_planted_region(method):
    img = canvas(64, 96, (40, 10, 16, RED))
    heat = gradcam_map(PlantedCNN(), img, method=method)
    assert heat.shape == (64, 96)
    assert_peak_in(heat, 40, 10, 16, margin=4)


def test_gradcam_reference_selects_what_two_images_share():
    model = PlantedCNN()
    query = canvas(64, 64, (4, 4, 16, RED), (40, 40, 16, GREEN))
    gallery = canvas(64, 64, (30, 10, 20, RED))
    own = gradcam_map(model, query)  # its own embedding: red and green both explain it
    assert own[44:52, 44:52].mean() > 0.5 and own[8:16, 8:16].mean() > 0.5
    g_emb = model.eval()(ov.explain.inputs.prepare_image(model, gallery)[0]).detach()[0]
    shared = gradcam_map(model, query, reference=g_emb)
    assert_peak_in(shared, 4, 4, 16, margin=4)
    assert shared[40:56, 40:56].mean() < 0.05  # green is not in the gallery image

    pair = explain_pair(model, query, gallery)
    assert pair.method == "gradcam"
    np.testing.assert_allclose(pair.query_map, shared, atol=1e-5)
    assert_peak_in(pair.gallery_map, 30, 10, 20, margin=4)


def test_gradcam_batch_one_target_per_image_matches_single_calls():
    model = PlantedCNN()
    a = canvas(64, 64, (0, 0, 16, RED))
    b = canvas(64, 64, (44, 44, 16, GREEN))
    c = canvas(48, 80, (10, 50, 16, RED))  # another size: its own batch
    maps = gradcam_maps(model, [a, b, c])
    assert [m.shape for m in maps] == [(64, 64), (64, 64), (48, 80)]
    assert_peak_in(maps[0], 0, 0, 16, margin=4)
    assert_peak_in(maps[1], 44, 44, 16, margin=4)
    for m, img in zip(maps, (a, b, c)):
        np.testing.assert_allclose(m, gradcam_map(model, img), atol=1e-5)


def test_gradcam_frozen_params_train_mode_grads_and_hooks_untouched():
    model = PlantedCNN().train()
    for p in model.parameters():
        p.requires_grad_(False)
    model.stem.bias.requires_grad_(True)
    model.stem.bias.grad = torch.full_like(model.stem.bias, 3.0)  # a user's accumulated gradient
    before = capture_state(model)
    heat = gradcam_map(model, canvas(64, 64, (20, 20, 16, RED)))
    assert_peak_in(heat, 20, 20, 16, margin=4)
    assert capture_state(model) == before and model.training and model.layer4[0].training
    assert torch.equal(model.stem.bias.grad, torch.full_like(model.stem.bias, 3.0))


@pytest.mark.parametrize("exc", [RuntimeError, IndexError])  # grad-cam's own __exit__ swallows IndexError
def test_gradcam_releases_hooks_when_it_raises(exc):
    model = PlantedCNN().train()

    def boom(*_):
        raise exc("planted failure")

    model.global_pool.register_forward_hook(boom)
    before = capture_state(model)
    with pytest.raises(exc, match="planted failure"):
        gradcam_map(model, canvas(64, 64), reference=np.ones(2, np.float32))
    with pytest.raises(exc, match="planted failure"):
        gradcam_map(model, canvas(64, 64))
    assert capture_state(model) == before


def test_gradcam_on_timm_resnet_all_methods_keep_state():
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).train()
    for p in model.layer1.parameters():
        p.requires_grad_(False)
    before = capture_state(model)
    img = canvas(70, 50, (10, 10, 20, RED))
    for method in [m for m in CAM_METHODS if m not in ("scorecam", "shapleycam")]:
        heat = gradcam_map(model, img, method=method, input_size=(64, 64))
        assert heat.shape == (70, 50) and heat.dtype == np.float32
        assert 0 <= heat.min() and heat.max() <= 1
        assert capture_state(model) == before, method
    assert model.training


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4.1"), ("convnext_atto", "stages.3"),
                                        ("efficientnet_b0", "blocks.6")])
def test_default_target_layer_is_the_last_stage(arch, layer):
    model = timm.create_model(arch, pretrained=False, num_classes=0)
    assert ov.explain.default_target_layer(model) is model.get_submodule(layer)


def test_gradcam_on_vit_uses_token_grid():
    model = make_vit(reg_tokens=2)
    heat = gradcam_map(model, canvas(48, 80, (0, 60, 20, RED)))  # blocks[-1].norm1, prefix tokens dropped
    assert heat.shape == (48, 80)
    assert_peak_in(heat, 0, 60, 20, margin=4)


def test_gradcam_bad_arguments_are_named():
    model = PlantedCNN()
    with pytest.raises(ValueError, match="method"):
        gradcam_map(model, canvas(32, 32), method="nope")
    with pytest.raises(ValueError, match="reference"):
        gradcam_maps(model, [canvas(32, 32)] * 2, reference=np.ones((3, 2)))
    with pytest.raises(ValueError, match="target_layer"):
        gradcam_map(model, canvas(32, 32), target_layer=nn.ReLU())
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        gradcam_map(model, canvas(32, 32))
    with torch.no_grad():  # a caller's no_grad is fine: the map needs only a local graph
        assert_peak_in(gradcam_map(model, canvas(64, 64, (8, 8, 16, RED))), 8, 8, 16, margin=4)


# --- pairs and overlays ---------------------------------------------------------------------

def test_vit_pair_matches_patch_tokens():
    model = make_vit()
    query = canvas(64, 64, (0, 0, 16, RED), (40, 40, 16, GREEN))
    gallery = canvas(64, 96, (24, 64, 16, RED))
    pair = explain_pair(model, query, gallery)
    assert pair.method == "tokens"
    assert pair.query_map.shape == (64, 64) and pair.gallery_map.shape == (64, 96)
    assert_peak_in(pair.query_map, 0, 0, 16, margin=4)
    assert pair.query_map[40:56, 40:56].mean() < 0.2
    assert_peak_in(pair.gallery_map, 24, 64, 16, margin=6)
    q_rgb, g_rgb = pair.overlays()
    assert q_rgb.shape == (64, 64, 3) and g_rgb.shape == (64, 96, 3) and q_rgb.dtype == np.uint8
    import matplotlib.pyplot as plt

    fig = pair.plot()
    shown = [ax.get_images()[0].get_array() for ax in fig.axes]
    np.testing.assert_array_equal(shown[0], q_rgb)
    np.testing.assert_array_equal(shown[1], g_rgb)
    plt.close(fig)


def test_overlay_is_rgb_hot_is_red():
    img = np.full((40, 60, 3), 128, np.uint8)
    heat = np.zeros((10, 15), np.float32)  # another size: resized to the image
    heat[0:3, 10:15] = 1.0
    out = overlay_heatmap(img, heat, cmap="jet", alpha=0.6)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    r, g, b = out[2, 55].astype(int)
    assert r > g + 40 and r > b + 40  # hot: red
    r, g, b = out[35, 5].astype(int)
    assert b > r + 40  # cold: blue
    np.testing.assert_array_equal(overlay_heatmap(img, heat, alpha=0.0), img)
    gray = overlay_heatmap(img, heat, cmap="gray", alpha=1.0)
    assert gray[2, 55].min() > 240 and gray[35, 5].max() < 15
    with pytest.raises(ValueError, match="alpha"):
        overlay_heatmap(img, heat, alpha=1.5)
    with pytest.raises(ValueError, match="cmap"):
        overlay_heatmap(img, heat, cmap="no-such-map")


def test_draw_functions_keep_size_and_show_red_where_the_signal_is():
    img = canvas(50, 70, (30, 40, 16, GREEN))
    out = draw_gradcam(PlantedCNN(), img, alpha=1.0)
    assert out.shape == (50, 70, 3) and out.dtype == np.uint8
    r, g, b = out[37, 47].astype(int)
    assert r > g and r > b
    vit_img = canvas(50, 70, (0, 0, 20, RED))
    out = draw_attention(make_vit(), vit_img, alpha=1.0)
    assert out.shape == (50, 70, 3)
    r, g, b = out[8, 8].astype(int)
    assert r > g and r > b
    r, g, b = out[45, 65].astype(int)
    assert b > r


def test_top_level_names():
    assert ov.attention_map is attention_map and ov.explain_pair is explain_pair
    assert ov.draw_gradcam is draw_gradcam and ov.gradcam_map is gradcam_map


def test_explainers_on_one_model_take_turns_across_threads():
    # a panel's worker thread and a notebook cell may explain the same model at once: the
    # second must wait, or it would see the first one's hooks and flags (and restore them wrongly)
    import threading
    import time

    from oml_viz.explain.state import preserved_state

    model = nn.Linear(2, 2)
    inside, overlaps = [], []

    def work():
        with preserved_state(model):
            if inside:
                overlaps.append(True)
            inside.append(1)
            model.register_forward_hook(lambda *a: None)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlaps
    assert not model._forward_hooks  # every thread's hook was released, none leaked
    with preserved_state(model), preserved_state(model):  # re-entrant in one thread
        pass
