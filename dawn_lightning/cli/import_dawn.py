"""`dawn-import-dawn`: the released DAWN checkpoints -> this project's stage checkpoints.

    dawn-import-dawn --lfg LFG_128_1000ep.pth --a2v DAWN_128.pth \
        --pbnet-pose pbnet/pose --pbnet-blink pbnet/blink --out checkpoints/dawn128

Each input is optional (a later run into the same --out adds to it). Writes stage1.ckpt, stage2_pose.ckpt,
stage2_blink.ckpt, stage3.ckpt and import.json (each source's path and SHA-256, the conventions recorded, and
the dawn-generate overrides that use them). See `dawn_lightning.released`.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dawn-import-dawn",
        description="Convert the released DAWN checkpoints (HF Hanbo-Cheng/DAWN) into ours.",
    )
    p.add_argument("--lfg", help="stage 1: LFG_128_1000ep.pth or LFG_256_400ep.pth")
    p.add_argument(
        "--a2v", help="stage 3: DAWN_128.pth or DAWN_256.pth (needs --lfg, or a stage1.ckpt in --out)"
    )
    p.add_argument(
        "--pbnet-pose", help="stage 2, pose: the PBNet folder (checkpoint_*.pth.tar + opt.yaml) or file"
    )
    p.add_argument("--pbnet-blink", help="stage 2, blink: the PBNet folder or file")
    p.add_argument("--out", required=True, help="folder for the converted checkpoints and import.json")
    p.add_argument(
        "--size", type=int, choices=(128, 256), help="frame size of --a2v (default: from the file names)"
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="load files that hold pickled Python objects besides tensors (only from a source you trust)",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from dawn_lightning.data.hubert import HUBERT_URL
    from dawn_lightning.released.convert import import_released

    try:
        record = import_released(
            args.out, args.lfg, args.a2v, args.pbnet_pose, args.pbnet_blink, args.size, args.trust_pickle
        )
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"dawn-import-dawn: error: {error}") from None
    for key, entry in record["checkpoints"].items():
        print(f"{key:9s} {args.out}/{entry['file']}  <- {entry['source']['path']}", file=sys.stdout)
    if "generate_overrides" in record:
        print("generate with: dawn-generate portrait=face.png speech=speech.wav out=talk.mp4 \\")
        hubert = "audio_features.hubert_path=/path/to/hubert-large-ls960-ft"  # the released weights' features
        print("    " + " \\\n    ".join([*record["generate_overrides"], hubert]))
        print(f"(HuBERT-large, 1024 wide, read from a local folder: git clone {HUBERT_URL})")
