"""Evaluation: predict, the paper's metrics, evaluate, report tables, confidence calibration."""
