"""One implementation each: the LRU cache, the atomic writer, figure -> pixels, the int check, OVERALL."""
from __future__ import annotations

import ast
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from oml_viz.checks import check_int
from oml_viz.data.atomic import atomic_path, write_atomic
from oml_viz.data.cache import LRUCache, ThumbnailCache
from oml_viz.errors import InputError

PACKAGE = Path(__file__).resolve().parents[1] / "oml_viz"


# --- the LRU ----------------------------------------------------------------------------------------------
def test_both_caches_are_the_one_lru():
    from oml_viz.widgets.png import PngCache

    assert issubclass(ThumbnailCache, LRUCache) and issubclass(PngCache, LRUCache)
    assert "OrderedDict" not in (PACKAGE / "widgets" / "png.py").read_text()


def test_lru_evicts_least_recent_by_items_and_bytes():
    c = LRUCache(max_bytes=100, max_items=3)
    for k in "abc":
        c.put(k, b"x" * 10)
    assert c.get("a") == b"x" * 10  # "a" is now the most recent
    c.put("d", b"y" * 10)
    assert "b" not in c and {"a", "c", "d"} <= {k for k in "abcd" if k in c}
    c.put("big", b"z" * 85)  # 30 + 85 > 100: the least recent go until it fits
    assert c.nbytes <= 100 and "big" in c and "c" not in c
    c.put("huge", b"z" * 101)  # larger than the whole cache: not kept, nothing evicted for it
    assert "huge" not in c and "big" in c
    assert (c.hits, c.misses) == (1, 0) and c.get("nope") is None and c.misses == 1


def test_lru_stores_arrays_read_only_and_png_cache_copies_them():
    from oml_viz.widgets.png import PngCache

    a = np.zeros(4)
    ThumbnailCache().put("k", a)
    assert not a.flags.writeable
    b = np.zeros(4)
    p = PngCache()
    p.put("k", b)
    assert b.flags.writeable and not p.get("k").flags.writeable
    with pytest.raises(TypeError, match="bytes or numpy arrays"):
        p.put("k", "text")


def test_lru_is_thread_safe_under_concurrent_puts():
    c = LRUCache(max_bytes=10**6, max_items=50)

    def work(t: int) -> None:
        for i in range(300):
            c.put((t, i), b"x" * (i % 7 + 1))
            c.get((t, i - 1))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(c) == 50
    assert c.nbytes == sum(len(c.get(k)) for k in list(c._data))


# --- the atomic writer ---------------------------------------------------------------------------------
def test_atomic_path_keeps_the_old_file_on_error_and_leaves_no_temp(tmp_path):
    target = tmp_path / "emb.npy"
    np.save(target, np.arange(3))
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            np.save(tmp, np.arange(10))  # the suffix is kept: np.save adds no second .npy
            assert tmp.suffix == ".npy" and tmp.parent == tmp_path
            raise RuntimeError("interrupted")
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]


def test_write_atomic_uses_the_umask_not_private_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "report.html", "<p>x</p>")
    finally:
        os.umask(old)
    assert path.read_text() == "<p>x</p>" and (path.stat().st_mode & 0o777) == 0o644
    with pytest.raises(FileNotFoundError, match="folder .* does not exist"):
        write_atomic(tmp_path / "no" / "such.txt", b"x")


def test_interrupted_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    from oml_viz.models import ResnetExtractor, load_extractor

    net = ResnetExtractor("resnet18")
    path = net.save(tmp_path / "net.pt")
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        Path(f).write_bytes(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        net.save(path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["net.pt"]
    monkeypatch.undo()
    assert type(load_extractor(path)).__name__ == "ResnetExtractor"


# --- figure -> pixels ------------------------------------------------------------------------------------
def test_figure_to_png_is_figure_to_array_and_dpi_is_restored():
    from matplotlib.figure import Figure

    from oml_viz.render.figure import figure_to_array
    from oml_viz.widgets.png import figure_to_png, png_to_rgb

    fig = Figure(figsize=(1.0, 0.5), dpi=40)
    fig.add_axes((0, 0, 1, 1)).plot([0, 1], [0, 1], color="red")
    np.testing.assert_array_equal(png_to_rgb(figure_to_png(fig, dpi=80)), figure_to_array(fig, dpi=80))
    assert figure_to_array(fig, dpi=80).shape == (40, 80, 3) and fig.dpi == 40


def test_only_render_figure_turns_figures_into_pixels():
    hits = [f"{p.relative_to(PACKAGE)}" for p in PACKAGE.rglob("*.py")
            if p.relative_to(PACKAGE).as_posix() not in ("render/figure.py", "compat/matplotlib.py")
            and any(s in p.read_text() for s in ("buffer_rgba", "print_figure", "savefig(buf", "canvas.draw()"))]
    assert hits == []


# --- the int check ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, low, high, error, message", [
    (True, 1, None, TypeError, "top_n must be a positive int, got True"),
    (2.0, 1, None, TypeError, "top_n must be a positive int, got 2.0"),
    ("3", 0, None, TypeError, "top_n must be an int >= 0"),
    (0, 1, None, ValueError, "top_n must be a positive int, got 0"),
    (7, 1, 6, ValueError, "top_n must be an int in 1..6, got 7"),
])
def test_check_int_names_the_argument(value, low, high, error, message):
    with pytest.raises(error, match=message) as info:
        check_int("top_n", value, low=low, high=high)
    assert isinstance(info.value, InputError)


def test_check_int_accepts_numpy_ints_and_is_what_retrieve_uses():
    import oml_viz as ov

    assert check_int("n", np.int32(3), low=1) == 3 and type(check_int("n", np.int64(3))) is int
    with pytest.raises(TypeError, match="top_n must be a positive int, got True"):
        ov.retrieve(np.eye(3, dtype=np.float32), [0, 0, 1], top_n=True)


# --- OVERALL -----------------------------------------------------------------------------------------------
def test_overall_is_spelled_out_once():
    """The string "OVERALL" as a value (not in docstrings) appears only where engine.OVERALL is defined."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        exported = {id(e) for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
                    for e in ast.walk(n.value)}
        docstrings = exported | {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and "OVERALL" in node.value and node.value.strip("/") == "OVERALL":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert found == ["engine/result.py:" + str(_line_of_overall())]


def _line_of_overall() -> int:
    lines = (PACKAGE / "engine" / "result.py").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith('OVERALL = "OVERALL"'))
