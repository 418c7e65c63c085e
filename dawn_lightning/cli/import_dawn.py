"""`dawn-import-dawn`: the released DAWN checkpoints -> this project's stage checkpoints.

    dawn-import-dawn --lfg LFG_128_1000ep.pth --a2v DAWN_128.pth \
        --pbnet-pose pbnet/pose --pbnet-blink pbnet/blink --out checkpoints/dawn128

    dawn-import-dawn --hub Hanbo-Cheng/DAWN --resolution 128 --bundle bundles/dawn128

Each input is optional (a later run into the same --out adds to it). Writes stage1.ckpt, stage2_pose.ckpt,
stage2_blink.ckpt, stage3.ckpt and import.json (each source's path and SHA-256, the conventions recorded, and
the dawn-generate overrides that use them). ``--hub`` takes the four released files of ``--resolution`` and
HuBERT-large from the Hugging Face hub (its cache: offline once cached); ``--bundle`` also writes a model
bundle (`dawn-export`'s layout, HuBERT inside) that `dawn-generate bundle=...` and `dawn-app` load. See
`dawn_lightning.released`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path


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
    p.add_argument(
        "--out",
        help="folder for the converted checkpoints and import.json (default with --bundle: a temporary one)",
    )
    p.add_argument(
        "--hub", help="a hub repository of the released files (Hanbo-Cheng/DAWN), instead of files"
    )
    p.add_argument(
        "--resolution", type=int, choices=(128, 256), default=128, help="which released set (--hub)"
    )
    p.add_argument("--bundle", help="also write a model bundle here (with HuBERT: --hubert or the hub's)")
    p.add_argument(
        "--hubert", help="a local HuBERT-large folder for the bundle (default with --hub: the hub's)"
    )
    p.add_argument("--hubert-repo", default="facebook/hubert-large-ls960-ft", help="HuBERT's hub repository")
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
    if not args.out and not args.bundle:
        raise SystemExit("dawn-import-dawn: error: give --out (checkpoints) and/or --bundle (a model bundle)")
    with tempfile.TemporaryDirectory(prefix="dawn-import-") as scratch:
        out = args.out or scratch
        try:
            record = convert(args, out)
            if args.bundle:
                bundle = write_bundle(args, Path(out))
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"dawn-import-dawn: error: {error}") from None
    if args.bundle:
        print(f"bundle   {bundle}: dawn-generate bundle={bundle} portrait=face.png speech=a.wav out=talk.mp4")
        return
    report(record, args.out)


def convert(args: argparse.Namespace, out: str) -> dict:
    """The released files (given, or from --hub) converted into checkpoints under ``out``."""
    from dawn_lightning.released.convert import import_released

    lfg, a2v, pose, blink, size = args.lfg, args.a2v, args.pbnet_pose, args.pbnet_blink, args.size
    if args.hub:
        from dawn_lightning.released.hub import released_files

        files = released_files(args.resolution, args.hub)
        lfg, a2v, pose, blink, size = (
            files["lfg"],
            files["a2v"],
            files["pose"],
            files["blink"],
            args.resolution,
        )
    return import_released(out, lfg, a2v, pose, blink, size, args.trust_pickle)


def write_bundle(args: argparse.Namespace, out: Path) -> Path:
    """A bundle of the converted set, with the HuBERT folder it needs (--hubert, or the hub's)."""
    from dawn_lightning.bundles import export_bundle
    from dawn_lightning.released.convert import OUTPUTS

    hubert = Path(args.hubert) if args.hubert else None
    if hubert is None and args.hub:
        from dawn_lightning.released.hub import hubert_folder

        hubert = hubert_folder(args.hubert_repo)
    if hubert is None:
        raise ValueError(
            "--bundle needs HuBERT-large for the released weights: give --hubert <folder> (or --hub)"
        )
    paths = {k: out / name for k, name in OUTPUTS.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"--bundle needs all four stages; missing: {', '.join(missing)}")
    return export_bundle(
        args.bundle,
        paths["motion"],
        (paths["pose"], paths["blink"]),
        paths["diffusion"],
        audio_encoder=hubert,
    )


def report(record: dict, out: str) -> None:
    from dawn_lightning.data.speech_encoders import HUBERT_URL

    for key, entry in record["checkpoints"].items():
        print(f"{key:9s} {out}/{entry['file']}  <- {entry['source']['path']}", file=sys.stdout)
    if "generate_overrides" in record:
        print("generate with: dawn-generate portrait=face.png speech=speech.wav out=talk.mp4 \\")
        hubert = "audio_features.model_path=/path/to/hubert-large-ls960-ft"  # the released weights' features
        print("    " + " \\\n    ".join([*record["generate_overrides"], hubert]))
        print(f"(HuBERT-large, 1024 wide, read from a local folder: git clone {HUBERT_URL})")
