"""The `avsync align` pipeline: analysis of a video against a reference, report, plots, re-timing."""
