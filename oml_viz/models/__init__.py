"""oml_viz.models"""
