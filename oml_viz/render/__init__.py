"""oml_viz.render"""
