"""Evaluation: datasets, methods, metrics and reports (graders: `pacore.graders`)."""
