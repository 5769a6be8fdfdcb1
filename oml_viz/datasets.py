"""Demo datasets as OML dataframes (PNGs + ``df.csv``), made offline.

Example:
    >>> import tempfile
    >>> from oml_viz.datasets import make_demo_dataset
    >>> df = make_demo_dataset(f"{tempfile.mkdtemp()}/demo_data", n_classes=4, images_per_class=2, size=16,
    ...                        progress=False)
    >>> len(df), {"label", "path", "split", "is_query", "is_gallery"} <= set(df.columns)
    (8, True)
"""
from oml_viz.data.demo import make_demo_dataset
from oml_viz.data.fashion_mnist import make_fashion_mnist_dataset

__all__ = ["make_demo_dataset", "make_fashion_mnist_dataset"]
