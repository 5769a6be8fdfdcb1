"""oml_viz.widgets"""
