"""LightningDataModules: each one reports the facts (classes, input shape, preprocessing) a model needs."""
