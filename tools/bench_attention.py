#!/usr/bin/env python
"""Benchmark SSSA-V1 vs SSSA-V2 vs the Spikformer baseline on CPU: forward+backward time and peak
memory against the number of tokens, with fitted scaling exponents; prints a markdown table.

    python tools/bench_attention.py                                   # defaults: grids 16..128, dim 64, 2 heads, T 4
    python tools/bench_attention.py --sizes 16,32,64,128 --json runs/bench_attention.json
    python tools/bench_attention.py --sizes 32x64,64x128 --max-mem-gb 8 --repeats 5

A thin shell over :mod:`detector.analysis.attention_bench` (what is measured is documented there).
"""

import argparse
import json
import os
import sys
from pathlib import Path

# The memory profiler's backend (Kineto) logs "gpuGetDeviceCount failed" on machines without a GPU;
# silence its log before torch loads it (set KINETO_LOG_LEVEL yourself to see it).
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

import _bootstrap  # noqa: E402,F401

from detector.analysis import attention_bench as ab  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=",".join(str(s) for s in ab.DEFAULT_SIZES),
                    help="comma-separated token grids: S (S x S) or HxW (default: %(default)s)")
    _bootstrap.add_options(ap, ab.BenchConfig)  # --dim, --heads, --timesteps, --batch, --repeats, ... (its defaults)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--attn", default=",".join(ab.ATTENTIONS), help="comma-separated subset of %(default)s")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the full result as JSON")
    args = ap.parse_args(argv)
    from detector import checks
    from detector.files import atomic_write_text

    checks.output_file(args.json, "--json")  # before the benchmark, not after it
    try:
        sizes = [ab.parse_grid(s) for s in args.sizes.split(",") if s.strip()]
        result = ab.run_benchmark(
            sizes, _bootstrap.options(ab.BenchConfig, args), threads=args.threads,
            attentions=[a.strip() for a in args.attn.split(",") if a.strip()],
            log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except ValueError as e:
        ap.error(str(e))
    print(ab.format_markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))
