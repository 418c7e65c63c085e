"""`dawn-app` (`make app`): the web app on http://127.0.0.1:7860 (Gradio; the `app` extra).

dawn-app                                  # the newest runs under experiments/ (`make demo` trains them)
dawn-app --bundle bundles/dawn64          # a model bundle (dawn-export), or a hub id from the local cache
dawn-app --host 0.0.0.0 --port 8080 --device cuda
"""

from __future__ import annotations

import argparse
import logging

from dawn_lightning.allocator import keep_freed_memory


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dawn-app", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="experiments", help="experiments folder whose newest runs are a model")
    p.add_argument(
        "--bundle", action="append", default=[], help="a bundle folder or hub id (repeatable; listed first)"
    )
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 serves other machines too")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda")
    p.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")
    p.add_argument("--steps", type=int, help="the sampling steps shown first (default: the first model's)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from dawn_lightning.app import ERRORS, Models, build_app, launch
    except ImportError as error:
        raise SystemExit(
            f"dawn-app: error: {error} (install the app extra: pip install -e '.[app]')"
        ) from None
    sources = [f"bundle:{b}" for b in args.bundle] + [f"run:{args.run}"]
    for source in sources:
        if reason := Models.missing(source):
            logging.getLogger("dawn_lightning.app").warning("%s", reason)
    models = Models(args.device, args.precision)
    sampler = {}
    if Models.missing(sources[0]) is None:  # the sliders start at the first model's recorded settings
        try:
            sampler = dict(models.get(sources[0]).sampler_settings)
        except ERRORS as error:  # the page says it again when that model is used
            logging.getLogger("dawn_lightning.app").warning("%s", error)
    if args.steps:
        sampler["num_steps"] = args.steps
    app = build_app(models, sources, sampler=sampler)
    launch(app, args.host, args.port)


if __name__ == "__main__":
    main()
