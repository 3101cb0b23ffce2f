"""Stage 6, export: TFLite (LiteRT) conversion checked against Keras, with standard TFLite metadata."""


def __getattr__(name: str):
    """Names of the old flat ``maskclf/export.py`` (now ``maskclf.export.convert``), with a warning."""
    from maskclf._moved import package_getattr

    return package_getattr("export", name)
