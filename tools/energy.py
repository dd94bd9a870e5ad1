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
from detector.analysis.energy import EnergyOptions, measure


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--source", help="image file, folder or glob pattern")
    src.add_argument("--data", help="Ultralytics dataset YAML: its val split images (path + val) are used")
    which = ap.add_mutually_exclusive_group()  # --weights or an untrained --model
    _bootstrap.add_options(ap, EnergyOptions, only=("weights", "variant"), group=which)
    _bootstrap.add_options(ap, EnergyOptions, skip=("weights", "variant"))
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    if not (a.source or a.data):
        ap.error("one of the arguments --source --data is required")
    o = _bootstrap.options(EnergyOptions, a)  # every option checked here, before the measurement
    try:
        run = measure(a.source, a.data, o)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from e
    report = run.report
    print(report.format_table())
    if run.untrained:
        print("NOTE: UNTRAINED model (random initialisation): firing rates and energy describe the "
              "architecture at init, not a trained detector.")
    for f, why in run.skipped:
        print(f"skipped {f}: {why}", file=sys.stderr)
    if o.json:
        print(f"JSON: {report.save_json(o.json)}")
    if o.csv:
        print(f"CSV: {report.save_csv(o.csv)}")
    if o.plot:
        title = (f"{run.model}, T={report.timesteps}, {report.images} image(s) at {run.imgsz}px: "
                 f"{report.energy_mj:.4g} mJ/image")
        print(f"plot: {report.save_plot(o.plot, title=title)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))
