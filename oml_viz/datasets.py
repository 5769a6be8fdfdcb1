"""Demo datasets as OML dataframes (PNGs + ``df.csv``), made offline.

Example:
    >>> from oml_viz.datasets import make_demo_dataset
    >>> df = make_demo_dataset("demo_data")      # doctest: +SKIP
"""
from oml_viz.data.demo import make_demo_dataset
from oml_viz.data.fashion_mnist import make_fashion_mnist_dataset

__all__ = ["make_demo_dataset", "make_fashion_mnist_dataset"]
