"""Training plumbing shared by the stages: BatchNorm sync, speed switches, optimiser helpers, plots and
visuals, atomic checkpoint writes."""
