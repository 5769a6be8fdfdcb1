"""oml_viz.pipelines"""
