"""Building and running the trainer: arguments, hook-aware trainer, checkpoints."""
