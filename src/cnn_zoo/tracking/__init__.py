"""Experiment trackers beside the run folder (MLflow, Weights & Biases) and the job files sent to them."""
