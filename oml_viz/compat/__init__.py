"""Other libraries' private internals, one module per library, each checked by ``tests/test_compat.py``.

Everything in oml_viz that reaches past a library's public API (an underscore attribute, an
internal module path, a method matplotlib calls but does not document) does it through one of
these modules, so that an upgrade that moves the internal breaks one named test instead of a
feature in the field. The modules import their library lazily or on import of the module only,
never from here.

- :mod:`oml_viz.compat.torch`: ``nn.Module`` hook tables.
- :mod:`oml_viz.compat.lightning`: Lightning loggers' ``_experiment``, ``_id``, ``_wandb_init``,
  ``_tracking_uri``.
- :mod:`oml_viz.compat.neptune`: a run's local id (``Run._id``).
- :mod:`oml_viz.compat.wandb`: the SDK's netrc reader (an internal module).
- :mod:`oml_viz.compat.matplotlib`: ``FigureImage.make_image`` (pixel-exact figure images).
- :mod:`oml_viz.compat.gradcam`: pytorch-grad-cam's hook holder and ``uses_gradients``.
"""
