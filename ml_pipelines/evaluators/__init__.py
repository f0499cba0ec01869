"""Evaluation metrics, one module per kind of metric, each a pure NumPy function of predictions and
labels (tasks call them from `evaluate`)."""
