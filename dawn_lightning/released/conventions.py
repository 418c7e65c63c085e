"""The DAWN reference's conventions, recorded in imported checkpoints so that generation feeds the released
weights what they were trained on (facts from the reference code study, dawn-reference-notes.md sections 2-6).
"""

from __future__ import annotations

# Audio: HuBERT-large (ls960-ft) last hidden state, 1024 wide, 50 Hz linearly interpolated to 25 fps frames.
HUBERT_FEATURES = {
    "kind": "hubert",
    "dim": 1024,
    "model": "facebook/hubert-large-ls960-ft",
    "output": "last_hidden_state",
    "sample_rate": 16_000,
    "fps": 25,
    "resampling": "linear interpolation of the 50 Hz features to the frame count",
}

# Pose: 3DDFA_V2's [yaw, pitch, roll (degrees), scale, tx, ty] in its 120 x 120 ROI-crop space (tz dropped).
# PBNet sees it min-max normalised with hard-coded bounds, p_norm = (p - min) / (max - min): as our stage-2
# checkpoints store (p - state_mean) / state_std, state_mean = min and state_std = max - min. Blink (the two
# eye ratios of 68-point landmarks) is used raw. Stage 3 takes the raw deltas from the portrait's state.
POSE_NAMES = ("yaw", "pitch", "roll", "scale", "tx", "ty")
POSE_MIN = (-90.0, -90.0, -90.0, 0.0, 0.0, 0.0)
POSE_MAX = (90.0, 90.0, 90.0, 1.0, 720.0, 1080.0)
POSE_MEAN = POSE_MIN
POSE_STD = tuple(hi - lo for lo, hi in zip(POSE_MIN, POSE_MAX, strict=True))
BLINK_NAMES = ("eye_ratio_left", "eye_ratio_right")
BLINK_MEAN = (0.0, 0.0)
BLINK_STD = (1.0, 1.0)
STATE_UNITS = {
    "pose": "3DDFA_V2 crop space: yaw, pitch, roll (degrees), scale, tx, ty (120 x 120 ROI-crop pixels)",
    "blink": "eye opening ratios (vertical / horizontal distance) of 68-point landmarks, left and right",
}
# The reference's initial state when the portrait's is unknown (its fallback pose; eye ratio 0.3).
DEFAULT_POSE = (0.0, 0.0, 0.0, 4.79e-4, 56.5, 64.9)
DEFAULT_BLINK = (0.3, 0.3)
# A nominal centred face box (x0, y0, x1, y1) for portraits without a face backend. The face-region
# encoder is not from the release (see FACE_ENCODER_SEED), so the box only shapes a random embedding.
MEAN_FACE_BOX = (0.25, 0.15, 0.75, 0.85)

# Stage 3: DDIM, 20 steps, eta 1, no guidance, dynamic thresholding of x0 at the 0.9 quantile, timesteps
# trunc(linspace(0, 1000, steps + 2))[1:-1] reversed ("reference" spacing) and alpha_bar read one step early
# (``alphas_cumprod_prev[t]``: reference_alpha_offset).
SAMPLER = {
    "name": "ddim",
    "num_steps": 20,
    "eta": 1.0,
    "guidance_scale": 1.0,
    "dynamic_threshold": 0.9,
    "spacing": "reference",
    "reference_alpha_offset": True,
}
# The LFG of LFG_128_1000ep.pth / LFG_256_400ep.pth (config/hdtf128.yaml's model_params; same at 256 px).
MOTION = {
    "num_regions": 10,
    "num_channels": 3,
    "temperature": 0.1,
    "scale_factor": 0.25,
    "revert_axis_swap": True,
    "region": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5},
    "background": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5},
    "flow": {"block_expansion": 64, "max_features": 1024, "num_blocks": 5},
    "generator": {
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
        "num_bottleneck_blocks": 6,
    },
}
# The U-Net of DAWN_128/256.pth: dim 64, mults (1, 2, 4, 8), GroupNorm 8, temporal band |i - j| <= 40 at
# inference, null condition = zeros. Diffusion on the raw grid x0 (no residual, no motion scaling).
UNET = {
    "dim": 64,
    "dim_mults": [1, 2, 4, 8],
    "attn_heads": 8,
    "attn_dim_head": 32,
    "spatial_dim_head": 32,
    "cross_heads": 8,
    "cross_dim_head": 8,
    "resnet_groups": 8,
    "init_kernel_size": 7,
    "window": 40,
    "rel_pos_buckets": 32,
    "rel_pos_max_distance": 32,
    "learn_null_cond": False,
}
MOTION_DIFFUSION = {
    "audio_dim": HUBERT_FEATURES["dim"],
    "z_channels": 256,
    "face_channels": 16,
    "face_hidden_channels": 8,
    "schedule": "cosine",
    "num_timesteps": 1000,
    "prediction": "eps",
    "target": "grid",
}
# The reference never trains or saves its face-region encoder (it is random at each inference, unseeded).
# The released U-Net therefore cannot come with the encoder it was trained against; we build ours from a
# fixed seed (the reference's training seed, 1234), so an imported model is the same on every machine and
# run. Which random draw it is does not matter more than it does for the reference's own inference.
FACE_ENCODER_SEED = 1234
FACE_ENCODER_WARNING = (
    "the face-region encoder of this imported stage 3 is not from the DAWN release (the reference never "
    f"trained or saved it): it is a fixed random one (seed {FACE_ENCODER_SEED}), as random as the "
    "reference's own at inference"
)
# PBNet (transformerreemb5 encoder + transformerdecoder4 decoder): the run script's sizes; band +-200 frames.
PBNET = {
    "audio_dim": HUBERT_FEATURES["dim"],
    "pose_latent_dim": 64,
    "audio_latent_dim": 256,
    "ff_size": 128,
    "num_layers": 2,
    "num_heads": 4,
    "dropout": 0.1,
    "num_buckets": 128,
    "max_distance": 128,
    "window": 200,
}
FRAME_SIZES = (128, 256)
