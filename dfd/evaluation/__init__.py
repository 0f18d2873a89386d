"""Evaluation: metrics, calibration, the stacker, plots and reports (on score tables)."""
