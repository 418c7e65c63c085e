"""Tensor helpers shared by models, data and stages (they import nothing of the project but its constants)."""
