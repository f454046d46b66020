"""The one LightningModule and what builds and runs a fit: pipeline, classifier, the training
switches around `Trainer.fit` (compile, LR finder, mixup, warmup), TTA, loading a classifier for inference."""
