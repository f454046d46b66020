"""Sweeps and searches: multirun bookkeeping, the Optuna (>= 4) search, its space and trial pruning."""
