"""oml_viz.engine"""
