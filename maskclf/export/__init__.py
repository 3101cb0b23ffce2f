"""Stage 6, export: TFLite (LiteRT) conversion checked against Keras, with standard TFLite metadata."""
