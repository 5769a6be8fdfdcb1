"""The oml-viz command tells user errors (one line, exit 2) from bugs (a traceback)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import oml_viz.pipelines.validate as validate_module
from oml_viz.errors import InputError, InputFileNotFoundError, InputValueError, MissingDependencyError
from oml_viz.pipelines.cli import main

PACKAGE = Path(__file__).resolve().parents[1] / "oml_viz"


def _config(tmp_path: Path) -> str:
    df = tmp_path / "df.csv"
    df.write_text("label,path,split,is_query,is_gallery\n0,a.png,validation,True,True\n")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"dataframe": str(df)}, "progress": False,
                                    "model": {"kind": "vit", "arch": "vit_tiny_patch16_224"}}))
    return str(path)


@pytest.mark.parametrize("bug", [ValueError("shapes do not match (an internal bug)"),
                                 ImportError("cannot import name 'x' from 'oml_viz.engine'"),
                                 TypeError("unsupported operand")])
def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch, bug):
    def broken(cfg, *a, **k):
        raise bug

    monkeypatch.setattr(validate_module, "validate_pipeline", broken)
    with pytest.raises(type(bug), match=str(bug.args[0])[:20]):
        main(["validate", _config(tmp_path)])


@pytest.mark.parametrize("error", [InputValueError("metric_args.cmc_top_k: expected int"),
                                   InputFileNotFoundError("dataset.dataframe: file not found: x.csv"),
                                   MissingDependencyError("The 'neptune' logger needs the 'neptune' package")])
def test_our_input_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, error):
    def refuse(cfg, *a, **k):
        raise error

    monkeypatch.setattr(validate_module, "validate_pipeline", refuse)
    assert main(["validate", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"


def test_a_bug_in_the_command_prints_a_traceback_and_exits_1(tmp_path):
    """End to end: a config that passes its checks but trips a (planted) bug shows the traceback."""
    script = (
        "import sys, oml_viz.pipelines.validate as v\n"
        "def broken(*a, **k):\n    raise ValueError('planted bug')\n"
        "v.validate_pipeline = broken\n"
        "from oml_viz.pipelines.cli import main\n"
        f"sys.exit(main(['validate', {_config(tmp_path)!r}]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "ValueError: planted bug" in out.stderr
    assert not out.stderr.startswith("error:")


def test_config_and_dataframe_errors_are_input_errors():
    from oml_viz.data import DataFrameError
    from oml_viz.pipelines.schema import ConfigError

    assert issubclass(ConfigError, InputError) and issubclass(ConfigError, ValueError)
    assert issubclass(DataFrameError, InputError) and issubclass(DataFrameError, ValueError)
    from oml_viz.data.images import ImageLoadError, MissingImageError

    assert issubclass(ImageLoadError, InputError) and issubclass(ImageLoadError, OSError)
    assert issubclass(MissingImageError, FileNotFoundError) and issubclass(MissingImageError, InputError)


def test_library_code_uses_no_assert_for_checks():
    """``assert`` vanishes under ``python -O``: checks in oml_viz raise real exceptions."""
    found = [f"{p.relative_to(PACKAGE)}:{n.lineno}" for p in PACKAGE.rglob("*.py")
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Assert)]
    assert found == []
