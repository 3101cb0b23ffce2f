"""Stage 2, models: the registry of model families (custom CNNs, VGG19, EfficientNet, MobileNet) and losses."""
