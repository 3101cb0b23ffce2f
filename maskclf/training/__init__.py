"""Stage 4, training: train a run, callbacks, calibration, ensembles, cross-validation and comparison."""
