"""Callbacks that hook into a fit: checkpoints, exact resume, divergence, stop signals, progress,
TensorBoard inspection, model summary, and the optional ones a config entry switches on."""
