"""OML dataframe reading and validation: every kind of problem is found and named."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from oml_viz.data import (
    DataFrameError,
    bboxes,
    check_dataframe,
    image_paths,
    read_dataframe,
    split_ids,
    validate_dataframe,
)


@pytest.fixture()
def dataset(tmp_path):
    """A valid 6-row OML dataset on disk (40x30 PNGs) and its dataframe."""
    (tmp_path / "img").mkdir()
    rows = []
    for i in range(6):
        Image.fromarray(np.full((30, 40, 3), i * 40, np.uint8)).save(tmp_path / "img" / f"{i}.png")
        val = i >= 2
        rows.append({"label": i // 2, "path": f"img/{i}.png", "split": "validation" if val else "train",
                     "is_query": val if val else np.nan, "is_gallery": val if val else np.nan,
                     "category": "a" if i < 4 else "b",
                     "x_1": 2.0 if i == 3 else np.nan, "y_1": 3.0 if i == 3 else np.nan,
                     "x_2": 20.0 if i == 3 else np.nan, "y_2": 25.0 if i == 3 else np.nan})
    return tmp_path, pd.DataFrame(rows)


def problems_of(df, root, **kw):
    return [(p.row, p.column, p.message) for p in check_dataframe(df, root, **kw)]


def test_valid_dataframe_has_no_problems_and_normalises(dataset):
    root, df = dataset
    assert check_dataframe(df, root) == []
    out = validate_dataframe(df, root)
    assert out["is_query"].dtype == bool and out["is_gallery"].dtype == bool
    assert out["is_query"].tolist() == [False, False, True, True, True, True]
    assert out.attrs["dataset_root"] == str(root)
    assert bboxes(out) == [None, None, None, (2, 3, 20, 25), None, None]
    assert split_ids(out).tolist() == [2, 3, 4, 5]
    assert image_paths(out)[0] == root / "img" / "0.png"
    assert df["is_query"].isna().sum() == 2, "the input must not be modified"


def test_read_dataframe_from_csv_uses_its_folder_as_root(dataset):
    root, df = dataset
    df.to_csv(root / "df.csv", index=False)
    out = read_dataframe(root / "df.csv")
    assert out.attrs["dataset_root"] == str(root)
    assert out["label"].dtype.kind == "i"
    assert bboxes(out)[3] == (2, 3, 20, 25)


def test_read_dataframe_missing_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_dataframe(tmp_path / "nope.csv")


def test_absolute_paths_need_no_root(dataset, tmp_path_factory):
    root, df = dataset
    df["path"] = [str(root / p) for p in df["path"]]
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert check_dataframe(df, elsewhere) == []


def test_not_a_dataframe():
    with pytest.raises(TypeError, match="DataFrame"):
        check_dataframe([1, 2, 3])


@pytest.mark.parametrize("column", ["label", "path", "split", "is_query", "is_gallery"])
def test_missing_required_column(dataset, column):
    root, df = dataset
    probs = problems_of(df.drop(columns=[column]), root)
    assert (None, column, "required column is missing") in probs


def test_partial_bbox_columns(dataset):
    root, df = dataset
    probs = problems_of(df.drop(columns=["y_2"]), root)
    assert any(c == "y_2" and "all four" in m for _, c, m in probs)


def test_duplicate_index(dataset):
    root, df = dataset
    df.index = [0, 1, 2, 2, 4, 5]
    assert any("duplicate" in m for _, _, m in problems_of(df, root))


def test_row_level_problems_name_row_and_column(dataset):
    root, df = dataset
    df = df.astype({"is_query": object, "label": object, "path": object, "category": object})
    df.loc[0, "label"] = None
    df.loc[1, "path"] = ""
    df.loc[2, "split"] = "test"
    df.loc[3, "is_query"] = np.nan  # empty on a validation row
    df.loc[4, "is_query"] = "maybe"
    df.loc[5, "category"] = ""
    probs = problems_of(df, root, check_files=False)
    by_cell = {(r, c): m for r, c, m in probs}
    assert "empty" in by_cell[(0, "label")]
    assert "non-empty string" in by_cell[(1, "path")]
    assert "'test'" in by_cell[(2, "split")]
    assert "validation row" in by_cell[(3, "is_query")]
    assert "'maybe'" in by_cell[(4, "is_query")]
    assert "empty" in by_cell[(5, "category")]


def test_error_message_lists_rows_and_columns(dataset):
    root, df = dataset
    df.loc[2, "split"] = "test"
    df.loc[4, "x_1"] = 5.0  # partly empty bbox
    with pytest.raises(DataFrameError) as err:
        validate_dataframe(df, root)
    text = str(err.value)
    assert "row 2, column 'split'" in text
    assert "row 4" in text and "partly empty" in text
    assert isinstance(err.value, ValueError) and len(err.value.problems) == 2


def test_empty_bbox_means_whole_image(dataset):
    root, df = dataset
    assert bboxes(validate_dataframe(df, root))[0] is None


@pytest.mark.parametrize(
    "cells, column, fragment",
    [
        ({"x_1": "abc"}, "x_1", "finite number"),
        ({"y_1": -1.0}, "y_1", ">= 0"),
        ({"x_1": 30.0, "x_2": 10.0}, "x_1,x_2", "x_1 < x_2"),
        ({"y_1": 25.0, "y_2": 25.0}, "y_1,y_2", "y_1 < y_2"),
        ({"x_2": np.nan}, "x_2", "partly empty"),
    ],
)
def test_bad_bbox(dataset, cells, column, fragment):
    root, df = dataset
    df = df.astype({c: object for c in cells})
    for c, v in cells.items():
        df.loc[3, c] = v
    probs = problems_of(df, root)
    assert any(r == 3 and c == column and fragment in m for r, c, m in probs), probs


def test_bbox_outside_the_image(dataset):
    root, df = dataset
    df.loc[3, "x_2"] = 41.0  # the image is 40 wide
    probs = problems_of(df, root)
    assert any(r == 3 and "exceeds the image size 40x30" in m for r, c, m in probs)
    assert problems_of(df, root, check_files=False) == []


def test_mixed_label_kinds(dataset):
    root, df = dataset
    df = df.astype({"label": object})
    df.loc[0, "label"] = "cat"
    assert any(c == "label" and "mixes" in m for _, c, m in problems_of(df, root))


def test_label_with_two_categories(dataset):
    root, df = dataset
    df.loc[3, "category"] = "b"  # label 1 is in rows 2 (a) and 3 (b)
    assert any(c == "category" and "label 1" in m for _, c, m in problems_of(df, root))


def test_validation_split_without_queries_or_gallery(dataset):
    root, df = dataset
    df.loc[df["split"] == "validation", "is_query"] = False
    df.loc[df["split"] == "validation", "is_gallery"] = False
    cols = {c for _, c, m in problems_of(df, root) if "no query" in m or "no gallery" in m}
    assert cols == {"is_query", "is_gallery"}


def test_missing_and_corrupt_files(dataset):
    root, df = dataset
    (root / "img" / "1.png").unlink()
    (root / "img" / "2.png").write_bytes(b"not an image at all")
    probs = problems_of(df, root)
    assert any(r == 1 and c == "path" and "file not found" in m for r, c, m in probs)
    assert any(r == 2 and c == "path" and "cannot read image" in m for r, c, m in probs)


def test_truncated_file_found_only_when_decoding(dataset):
    root, df = dataset
    big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(big).save(root / "img" / "4.png")
    data = (root / "img" / "4.png").read_bytes()
    (root / "img" / "4.png").write_bytes(data[: len(data) // 2])
    assert problems_of(df, root) == []  # the header alone is fine
    probs = problems_of(df, root, decode=True)
    assert [(r, c) for r, c, _ in probs] == [(4, "path")]


def test_bool_like_values_are_accepted(dataset):
    root, df = dataset
    df = df.astype({"is_query": object, "is_gallery": object})
    df.loc[2:, "is_query"] = ["True", "false", 1, 0]
    df.loc[2:, "is_gallery"] = [1.0, "yes", True, "1"]
    out = validate_dataframe(df, root)
    assert out["is_query"].tolist()[2:] == [True, False, True, False]
    assert out["is_gallery"].tolist()[2:] == [True, True, True, True]


from hypothesis import given, settings
from hypothesis import strategies as st

_cell = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=6), st.sampled_from(["train", "validation", "True", "0", ""]))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({c: _cell for c in
                                       ["label", "path", "split", "is_query", "is_gallery", "category",
                                        "x_1", "y_1", "x_2", "y_2"]}), min_size=1, max_size=6))
def test_any_cells_give_problems_or_a_valid_frame_never_a_crash(rows):
    df = pd.DataFrame(rows)
    problems = check_dataframe(df, check_files=False)
    assert all(p.row in df.index or p.row is None for p in problems)
    if problems:
        with pytest.raises(DataFrameError):
            validate_dataframe(df, check_files=False)
    else:
        out = validate_dataframe(df, check_files=False)
        assert out["is_query"].dtype == bool
        bboxes(out)  # every bbox parses
