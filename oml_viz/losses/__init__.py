"""oml_viz.losses"""
