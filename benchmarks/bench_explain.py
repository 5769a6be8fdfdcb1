"""Speed of the explainers against the model's own forward pass, measured in the same run.

Targets (median, 2 CPU cores): ViT-S/16 attention map at 224 px < 0.3 s; ResNet-50 Grad-CAM
at 224 px < 0.6 s. Random-init weights (speed does not depend on them). The baselines are a
plain forward pass (eval, no_grad) on the already-normalised tensor and, for Grad-CAM, one
forward + backward to the input, which is the least any gradient method must do.

    python benchmarks/bench_explain.py [--threads 2] [--repeats 7] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def paired(fn: Callable[[], object], base: Callable[[], object], repeats: int,
           device: torch.device) -> tuple[float, float]:
    """(median seconds of ``fn``, median of per-round ratios fn / base). Each round times the
    baseline right before ``fn``, so a busy machine inflates both alike and the ratio holds."""
    fn(), base()  # warm-up: lazy imports, allocator, kernels
    times, ratios = [], []
    for _ in range(repeats):
        b = _timed(base, device)
        t = _timed(fn, device)
        times.append(t)
        ratios.append(t / b)
    return statistics.median(times), statistics.median(ratios)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    import timm

    from oml_viz.explain import attention_map, gradcam_map
    from oml_viz.explain.inputs import prepare_image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    photo = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)  # a typical photo size, not square
    rows = []

    vit = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0).eval().to(device)
    x, _ = prepare_image(vit, img)

    def vit_forward():
        with torch.no_grad():
            vit(x)

    rows.append(("ViT-S/16 224", "forward (baseline vs itself: the noise)", *paired(vit_forward, vit_forward, args.repeats, device), None))
    for label, fn, target in [
        ("attention_map", lambda: attention_map(vit, img), 0.3),
        ("attention_map 375x500", lambda: attention_map(vit, photo), None),
        ("attention_map rollout", lambda: attention_map(vit, img, rollout=True), None),
    ]:
        rows.append(("ViT-S/16 224", label, *paired(fn, vit_forward, args.repeats, device), target))

    cnn = timm.create_model("resnet50", pretrained=False, num_classes=0).eval().to(device)
    xc, _ = prepare_image(cnn, img)

    def cnn_forward():
        with torch.no_grad():
            cnn(xc)

    def cnn_forward_backward():
        xi = xc.detach().requires_grad_(True)
        out = cnn(xi)
        (out * out.detach()).sum().backward()

    rows.append(("ResNet-50 224", "forward (baseline vs itself: the noise)", *paired(cnn_forward, cnn_forward, args.repeats, device),
                 None))
    for label, fn, target in [
        ("forward+backward to the input", cnn_forward_backward, None),
        ("gradcam_map", lambda: gradcam_map(cnn, img), 0.6),
        ("gradcam_map gradcam++", lambda: gradcam_map(cnn, img, method="gradcam++"), None),
        ("gradcam_map 375x500", lambda: gradcam_map(cnn, photo), None),
    ]:
        rows.append(("ResNet-50 224", label, *paired(fn, cnn_forward, args.repeats, device), target))

    import os

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    a = torch.randn(1024, 1024, device=device)
    gemm = statistics.median(_timed(lambda: a @ a, device) for _ in range(5))
    gflops = 2 * 1024**3 / gemm / 1e9  # the machine's speed now (PERF.md: ~255 GFLOP/s idle, 2 threads)
    print(f"device: {name}; median of {args.repeats}; torch {torch.__version__}, timm {timm.__version__}; "
          f"load average {load:.1f}; fp32 matmul {gflops:.0f} GFLOP/s now")
    if load > args.threads + 0.5:
        print("note: the machine is busier than the threads used; absolute times are inflated, "
              "the 'x forward' ratios are the comparable numbers")
    print("| model | call | median s | x forward (paired) | target |")
    print("|---|---|---|---|---|")
    for model, label, t, ratio, target in rows:
        verdict = "" if target is None else (f"< {target} s: {'PASS' if t < target else 'FAIL'}")
        print(f"| {model} | {label} | {t:.3f} | {ratio:.2f} | {verdict} |")


if __name__ == "__main__":
    main()
