"""Evaluation: datasets, graders, methods, the trajectory store, metrics and reports."""
