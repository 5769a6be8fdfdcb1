"""The layer rules of DESIGN.md: what each package may load, and which modules may touch private internals."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oml_viz"


def _loaded_after(stmt: str) -> list[str]:
    code = f"import sys, json\n{stmt}\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith('oml_viz'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_models_load_nothing_of_explain():
    loaded = _loaded_after("import oml_viz.models; from oml_viz.models import ViTExtractor, load_extractor")
    assert "oml_viz.models.extractor" in loaded
    assert [m for m in loaded if m.startswith("oml_viz.explain")] == []


def test_checkpoint_and_extractor_do_not_import_each_other():
    """No cycle: checkpoint.py finds extractor classes through the registry."""
    def imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}

    assert "oml_viz.models.extractor" not in imports(PACKAGE / "models" / "checkpoint.py")
    assert "oml_viz.models.checkpoint" in imports(PACKAGE / "models" / "extractor.py")


def test_explain_is_reached_from_models_only_by_local_imports():
    """Module-level imports of models/ never name explain/ (the convenience methods import inside)."""
    for path in (PACKAGE / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("oml_viz.explain"), f"{path.name} imports {node.module}"


_PRIVATE = re.compile(r"(?<=[\w)\]])\.(_[a-z]\w*)")
# internals of torch, Lightning, neptune, wandb, matplotlib and grad-cam that oml_viz uses (see oml_viz/compat)
_KNOWN_INTERNALS = ("._experiment", "._id", "._wandb_init", "._tracking_uri", "wandb.sdk", "_forward_hooks",
                    "_forward_pre_hooks", "_backward_hooks", ".activations_and_grads", "def make_image")


def _own_private_names() -> set[str]:
    """Underscore names oml_viz defines itself (functions, classes, attributes it assigns), compat aside."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if "compat" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
    return {n for n in names if n.startswith("_")}


def _code_lines(path: Path):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if not code.lstrip().startswith((">>>", "...")):
            yield i, code


def test_private_internals_of_other_libraries_are_touched_only_in_compat():
    """``x._name`` that oml_viz does not define itself, and the internals we know of, only in oml_viz/compat/."""
    own = _own_private_names() - {k.strip(".") for k in _KNOWN_INTERNALS}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if "compat" in path.parts:
            continue
        for i, code in _code_lines(path):
            if code.lstrip().startswith(("from ", "import ")) and "wandb.sdk" not in code:
                continue
            hits = [a for a in _PRIVATE.findall(code) if a not in own and not a.startswith("__")]
            hits += [k for k in _KNOWN_INTERNALS if k in code]
            found += [f"{path.relative_to(PACKAGE)}:{i}: {h}" for h in hits]
    assert found == []
    in_compat = "".join(p.read_text() for p in (PACKAGE / "compat").glob("*.py"))
    assert all(k in in_compat for k in _KNOWN_INTERNALS)


def test_unwrap_model_unwraps_only_our_extractors():
    from torch import nn

    from oml_viz.explain.inputs import unwrap_model
    from oml_viz.models import ResnetExtractor

    ext = ResnetExtractor("resnet18")
    assert unwrap_model(ext) is ext.model

    class BackbonePlusHead(nn.Module):  # a user's wrapper: .model is only part of what it computes
        def __init__(self):
            super().__init__()
            self.model = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.model(x).mean(dim=(2, 3)))

    wrapper = BackbonePlusHead()
    assert unwrap_model(wrapper) is wrapper
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        unwrap_model(object())


def test_lazy_names_stay_functions_after_their_module_is_imported():
    """``oml_viz.analysis.compare`` is also a module name: importing it must not shadow the function."""
    code = ("import sys, importlib, oml_viz as ov, oml_viz.analysis as a\n"
            "m = importlib.import_module('oml_viz.analysis.compare')\n"
            "print(ov.compare is m.compare and a.compare is m.compare and callable(ov.compare))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True"
