"""oml_viz.data: the OML dataframe format, image loading and the demo datasets.

Example:
    >>> import tempfile
    >>> from oml_viz.data import load_image, make_demo_dataset, read_dataframe
    >>> root = f"{tempfile.mkdtemp()}/demo"
    >>> _ = make_demo_dataset(root, n_classes=2, images_per_class=2, size=16, progress=False)
    >>> df = read_dataframe(f"{root}/df.csv")
    >>> load_image(f"{root}/" + df["path"][0]).shape
    (16, 16, 3)
"""
from .cache import ThumbnailCache, default_cache
from .dataframe import (
    BBOX_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    SPLITS,
    DataFrameError,
    Problem,
    bboxes,
    check_dataframe,
    image_paths,
    normalize_dataframe,
    read_dataframe,
    resolve_path,
    row_bbox,
    split_ids,
    validate_dataframe,
)
from .demo import make_demo_dataset
from .fashion_mnist import make_fashion_mnist_dataset, read_idx
from .images import ImageLoadError, array_to_rgb, load_image, pil_to_rgb
from .sources import ImageSource, Thumbnail

__all__ = [
    "BBOX_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "DataFrameError",
    "ImageLoadError",
    "ImageSource",
    "Problem",
    "Thumbnail",
    "ThumbnailCache",
    "array_to_rgb",
    "bboxes",
    "check_dataframe",
    "default_cache",
    "image_paths",
    "load_image",
    "make_demo_dataset",
    "make_fashion_mnist_dataset",
    "normalize_dataframe",
    "pil_to_rgb",
    "read_dataframe",
    "read_idx",
    "resolve_path",
    "row_bbox",
    "split_ids",
    "validate_dataframe",
]
