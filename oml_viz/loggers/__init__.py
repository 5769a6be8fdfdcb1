"""oml_viz.loggers"""
