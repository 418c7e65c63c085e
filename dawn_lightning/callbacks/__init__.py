"""Lightning callbacks and plugins of the training runs: EMA, random state, monitoring, atomic checkpoints."""
