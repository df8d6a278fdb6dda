"""Training: the LightningModule, the per-epoch DTW callback, W&B set-up, sweeps."""
