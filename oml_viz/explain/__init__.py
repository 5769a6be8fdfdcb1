"""oml_viz.explain"""
