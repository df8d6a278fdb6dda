"""Evaluation: known-truth warps, metrics, the classical baseline, the evaluation harness."""
