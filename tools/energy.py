#!/usr/bin/env python
"""Firing rates, synaptic operations and energy per image of SNN-ViT-YOLO, measured on real images.

    python tools/energy.py --source images/ --json energy.json --csv energy.csv --plot energy.png
    python tools/energy.py --weights best.pt --data datasets/ssdd.yaml --max-images 200 --timesteps 2
    python tools/energy.py --model n --source images/ --imgsz 320        # untrained variant, no weights

Energy model (docs/design.md, section 5): E = E_MAC x MACs(real-valued inputs) + E_AC x SOPs(spike inputs)
+ SSSA's own operations, with exact spike fan-out SOPs; see detector/analysis/energy/ for every
counting rule and detector/analysis/constants.py for the constants and their sources.
"""

import argparse
import sys

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.analysis.constants import DEFAULT_PRESET, PRESETS, get_constants
from detector.analysis.energy import measure_energy
from detector.io.batches import dataset_images, find_images, image_batches


def load(args):
    """(model, description, untrained) from --model or --weights (default: the shipped weights)."""
    if args.model:
        from detector.models import SNNViTYOLO

        model = SNNViTYOLO(args.model, verbose=False).eval()
        return model, f"snnvit-yolo-{args.model} (UNTRAINED, random initialisation)", True
    from detector.infer.runtime import load_torch_model
    from detector.models.settings import settings_of

    try:
        model = load_torch_model(args.weights, args.device)  # batch norm folded: the spikes, and the counts, are the same
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}; or --model n|s|m to analyse an untrained variant.") from e
    return model, settings_of(model).source, False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--source", help="image file, folder or glob pattern")
    src.add_argument("--data", help="Ultralytics dataset YAML: its val split images (path + val) are used")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--weights", default=None, help=_bootstrap.WEIGHTS_HELP)
    which.add_argument("--model", choices=["n", "s", "m"], help="analyse a freshly initialised (untrained) variant")
    ap.add_argument("--split", default="val", help="dataset split with --data (default: val)")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="letterbox size, a multiple of 32 (default: the size the weights were trained at, else 512)")
    ap.add_argument("--timesteps", type=int, default=None, help="T to run with (default and maximum: the model's T)")
    ap.add_argument("--max-images", type=int, default=None, help="measure at most this many images")
    ap.add_argument("--batch", type=int, default=4, help="images per forward pass (does not change the counts)")
    ap.add_argument("--device", default="cpu", help="cpu, mps, cuda, cuda:N or N")
    ap.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                    help=f"energy constants (default {DEFAULT_PRESET}: Horowitz 2014, E_MAC 4.6 pJ, E_AC 0.9 pJ)")
    ap.add_argument("--e-mac", type=float, default=None, help="override E_MAC in pJ")
    ap.add_argument("--e-ac", type=float, default=None, help="override E_AC in pJ")
    ap.add_argument("--json", default=None, help="write the full report (totals, constants, per-layer) as JSON")
    ap.add_argument("--csv", default=None, help="write the per-layer table as CSV")
    ap.add_argument("--plot", default=None, help="write a PNG of per-layer firing rates and energy")
    ap.add_argument("--tile", type=int, default=None, metavar="SIZE",
                    help="measure the tiles of sliced detection (SIZE px) instead of whole images: energy per tile")
    ap.add_argument("--overlap", type=float, default=0.2, help="overlap between tiles (default 0.2)")
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    if not (a.source or a.data):
        ap.error("one of the arguments --source --data is required")
    if a.max_images is not None and a.max_images < 1:
        ap.error("--max-images must be >= 1")
    if a.batch < 1:
        ap.error("--batch must be >= 1")
    from pathlib import Path

    from detector import checks

    if a.imgsz is not None:
        checks.imgsz(a.imgsz)  # the one size check, before the model loads
    outs = [(flag, path) for flag, path in (("--json", a.json), ("--csv", a.csv), ("--plot", a.plot)) if path]
    for flag, path in outs:  # before the measurement, not after it
        checks.output_file(path, flag)
    if len({str(Path(p).resolve()) for _, p in outs}) < len(outs):
        ap.error(f"{', '.join(f for f, _ in outs)} name the same file")

    constants = get_constants(a.preset, a.e_mac, a.e_ac)
    model, desc, untrained = load(a)
    from detector.models.settings import settings_of

    a.imgsz = checks.image_size(a.imgsz, settings_of(model).imgsz(fallback=512))
    from detector.devices import resolve_device

    model.to(resolve_device(a.device).torch)
    paths = find_images(a.source) if a.source else dataset_images(a.data, a.split)
    if a.max_images:
        paths = paths[: a.max_images]
    skipped: list = []
    meta = {"model": desc, "untrained": untrained, "source": str(a.source or a.data), "imgsz": a.imgsz,
            "skipped": skipped}
    try:
        if a.tile is not None:
            from detector.io.tiles import check_tiling

            check_tiling(a.tile, a.overlap)
            meta["per"] = f"tile of {a.tile} px (overlap {a.overlap})"
        report = measure_energy(model, image_batches(paths, a.imgsz, a.batch, skipped, a.tile, a.overlap),
                                timesteps=a.timesteps,
                                constants=constants, max_images=a.max_images, meta=meta)
    except RuntimeError as e:
        if "no images were measured" not in str(e):
            raise
        raise SystemExit(f"error: none of the {len(paths)} image(s) could be read") from e
    print(report.format_table())
    if untrained:
        print("NOTE: UNTRAINED model (random initialisation): firing rates and energy describe the "
              "architecture at init, not a trained detector.")
    for f, why in skipped:
        print(f"skipped {f}: {why}", file=sys.stderr)
    if a.json:
        print(f"JSON: {report.save_json(a.json)}")
    if a.csv:
        print(f"CSV: {report.save_csv(a.csv)}")
    if a.plot:
        title = (f"{desc}, T={report.timesteps}, {report.images} image(s) at {a.imgsz}px: "
                 f"{report.energy_mj:.4g} mJ/image")
        print(f"plot: {report.save_plot(a.plot, title=title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))
