"""Stage-2 generators of pose and blink sequences; each has ``config``, ``losses`` and ``generate``."""

from dawn_lightning.models.pose_blink.diffusion import PoseDiffusion
from dawn_lightning.models.pose_blink.pbnet import PBNet

GENERATORS = {"PBNet": PBNet, "PoseDiffusion": PoseDiffusion}
