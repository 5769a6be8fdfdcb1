"""oml_viz.data"""
