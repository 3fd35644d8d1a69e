"""Training utilities: BN recalibration (more with the training issue)."""
