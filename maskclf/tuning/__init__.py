"""Stage 5, tuning: KerasTuner searches over a tuning/*.yaml space."""
