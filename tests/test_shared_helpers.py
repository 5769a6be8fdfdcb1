"""One implementation each: the LRU cache, the atomic writer, figure -> pixels, the int check, OVERALL."""
from __future__ import annotations

import ast
import os
import re
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


def _int_args():
    import pandas as pd

    from oml_viz.analysis.paired import paired_bootstrap
    from oml_viz.data.demo import make_demo_dataset
    from oml_viz.render import plot_pairs
    from oml_viz.render.confusions import confusion_matrix_of
    from oml_viz.run_args import check_input_size

    conf = pd.DataFrame({"query_label": [0], "retrieved_label": [1], "count": [1]})
    return {
        "top": lambda v: confusion_matrix_of(conf, top=v),
        "n_boot": lambda v: paired_bootstrap(np.zeros((3, 1)), [np.arange(3)], n_boot=v),
        "input_size[0] (height)": lambda v: check_input_size((v, 8)),
        "n_leaks": lambda v: make_demo_dataset("unused", n_classes=2, images_per_class=2, size=16, n_leaks=v),
        "n": lambda v: plot_pairs(pd.DataFrame(columns=["id_a", "id_b", "distance"]), [], n=v),
    }


@pytest.mark.parametrize("name", ["top", "n_boot", "input_size[0] (height)", "n_leaks", "n"])
def test_converted_int_arguments_raise_type_error_for_non_ints_and_value_error_out_of_range(name):
    call = _int_args()[name]
    with pytest.raises(TypeError, match=rf"{re.escape(name)} must be .*int.*, got 2\.5 \(float\)"):
        call(2.5)
    with pytest.raises(ValueError, match=rf"{re.escape(name)} must be .*int.*, got -1"):
        call(-1)


def _hand_written_int_checks(source: str) -> list[int]:
    """Lines of ``if ... not isinstance(x, <int types only>) ...: raise``: the int check done by hand.

    Only negated isinstance calls whose types are all int-like (int, np.integer, bool) count, so a
    dispatch (``if isinstance(head, int): ...``) or a number / device check (int with float, str,
    torch.device) is not one."""
    def int_only(types: ast.expr) -> bool:
        names = [e.id if isinstance(e, ast.Name) else e.attr if isinstance(e, ast.Attribute) else None
                 for e in (types.elts if isinstance(types, ast.Tuple) else [types])]
        return set(names) <= {"int", "integer", "bool", "bool_"} and bool({"int", "integer"} & set(names))

    def negated_int_isinstance(test: ast.expr) -> bool:
        return any(isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not) and isinstance(n.operand, ast.Call)
                   and isinstance(n.operand.func, ast.Name) and n.operand.func.id == "isinstance"
                   and len(n.operand.args) == 2 and int_only(n.operand.args[1]) for n in ast.walk(test))

    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.If) and negated_int_isinstance(node.test)
            and any(isinstance(s, ast.Raise) for b in node.body for s in ast.walk(b))]


def test_the_int_check_scan_finds_hand_written_checks_and_nothing_else():
    hand = ("def f(n, top):\n"
            "    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:\n"
            "        raise ValueError('n must be a positive int')\n"
            "    if not isinstance(top, int):\n"
            "        raise TypeError('top')\n")
    legit = ("def g(head, v, device):\n"
             "    if isinstance(head, (int, np.integer)) and not isinstance(head, bool):\n"
             "        raise ValueError('head out of range')\n"
             "    if not isinstance(v, (int, float, np.integer, np.floating)):\n"
             "        raise ValueError('v must be a number')\n"
             "    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):\n"
             "        raise TypeError('device')\n")
    assert _hand_written_int_checks(hand) == [2, 4] and _hand_written_int_checks(legit) == []


def test_no_hand_written_int_check_outside_checks_py():
    """Every int argument goes through oml_viz.checks.check_int (one wording, TypeError vs ValueError)."""
    found = [f"{p.relative_to(PACKAGE)}:{line}" for p in sorted(PACKAGE.rglob("*.py"))
             if p.relative_to(PACKAGE).as_posix() != "checks.py" for line in _hand_written_int_checks(p.read_text())]
    assert found == []


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
