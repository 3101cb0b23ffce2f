"""Stage 2, models: the registry of model families (custom CNNs, VGG19, EfficientNet, MobileNet) and losses."""


def __getattr__(name: str):
    """Names of the old flat ``maskclf/models.py`` (now ``maskclf.models.registry``), with a warning."""
    from maskclf._moved import package_getattr

    return package_getattr("models", name)
