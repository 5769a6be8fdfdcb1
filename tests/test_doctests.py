"""Docstring examples are tests: none is skipped, and ``make test`` (plain ``pytest``) runs them."""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_docstring_example_is_skipped():
    skipped = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "oml_viz").rglob("*.py")
               for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"doctest:.*\+SKIP", line)]
    assert skipped == []


def test_every_module_has_a_runnable_example_count_above_zero():
    examples = sum(p.read_text().count(">>> ") for p in (ROOT / "oml_viz").rglob("*.py"))
    assert examples > 300


def test_plain_pytest_runs_the_doctests_of_the_package():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in cfg["addopts"].split()
    assert "oml_viz" in cfg["testpaths"] and "tests" in cfg["testpaths"]
