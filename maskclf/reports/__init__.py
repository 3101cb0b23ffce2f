"""Stage 3, reports: metrics, plots, evaluation of a run, Grad-CAM, the HTML report, cv summaries."""
