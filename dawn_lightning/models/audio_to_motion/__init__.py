"""Stage 3 (A2V-FDM) networks: the 3-D U-Net denoiser and its temporal attention."""
