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
    ap.add_argument("--dim", type=int, default=64, help="channels C")
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--timesteps", type=int, default=4, help="T")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5, help="least timed steps per configuration, after one warm-up")
    ap.add_argument("--min-time", type=float, default=1.0,
                    help="keep timing a configuration (up to 50 steps) until this many seconds of steps ran")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--attn", default=",".join(ab.ATTENTIONS), help="comma-separated subset of %(default)s")
    ap.add_argument("--max-mem-gb", type=float, default=4.0, help="skip configurations estimated to need more")
    ap.add_argument("--max-seconds", type=float, default=120.0,
                    help="skip configurations predicted (from smaller sizes) to take longer")
    ap.add_argument("--fit-min-tokens", type=int, default=1024, help="lower end of the upper-range exponent fit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the full result as JSON")
    args = ap.parse_args(argv)
    from detector import checks
    from detector.files import atomic_write_text

    checks.output_file(args.json, "--json")  # before the benchmark, not after it
    try:
        sizes = [ab.parse_grid(s) for s in args.sizes.split(",") if s.strip()]
        result = ab.run_benchmark(
            sizes, dim=args.dim, heads=args.heads, timesteps=args.timesteps, batch=args.batch, repeats=args.repeats,
            min_time=args.min_time, threads=args.threads,
            max_mem_gb=args.max_mem_gb, max_seconds=args.max_seconds,
            attentions=[a.strip() for a in args.attn.split(",") if a.strip()], fit_min_tokens=args.fit_min_tokens,
            seed=args.seed, log=lambda msg: print(msg, file=sys.stderr, flush=True),
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
