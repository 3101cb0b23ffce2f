"""Research levers kept for reproduction, off the everyday path (docs/LEVERS.md): label audit and relabelling, painted masks, synthetic crops, distillation / SAM / L2-SP."""
