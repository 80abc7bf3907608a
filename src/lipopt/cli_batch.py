"""`lipopt batch`: its flags, the call into batch.run_batch, and the summary it prints.

The argument parsing of the batch command lives here, in the CLI layer; batch.py knows nothing of it.
"""
from __future__ import annotations

import json
import sys

from .api import UPPER_METHODS
from .batch import load_points, run_batch
from .errors import InvalidInputError


def add_batch_parser(subparsers):
    """Add the ``batch`` subcommand to an argparse subparsers object; returns its parser."""
    b = subparsers.add_parser("batch", help="local bounds around every point of a data set (Dask, resumable)",
                              description="Certified local Lipschitz bounds around every point of a data set, "
                              "streamed to a CSV/parquet file; rerun with the same --out to resume.")
    b.add_argument("model", help="model file (.npz, .onnx, .pt/.pth TorchScript)")
    b.add_argument("--data", required=True, metavar="X.npy|X.npz|mnist:N",
                   help="points: .npy (rows), .npz (X or images, optional y or labels; uint8 scaled to [0,1]), "
                   "or mnist:N (bundled MNIST test images)")
    b.add_argument("--radius", type=float, required=True, metavar="EPS", help="radius of the ball around each point")
    b.add_argument("--ball", default="inf", choices=["inf", "2"], help="norm of the ball (default inf)")
    b.add_argument("--clip", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="data range, e.g. 0 1 for pixels")
    sel = b.add_mutually_exclusive_group()
    sel.add_argument("--output", default=None, metavar="I|label",
                     help="bound output I, or each point's own label ('label')")
    sel.add_argument("--margin", type=int, nargs=2, default=None, metavar=("I", "J"), help="bound f_I - f_J")
    b.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="input norm (default inf)")
    b.add_argument("--method", default="lp", choices=list(UPPER_METHODS))
    b.add_argument("--degree", type=int, default=None, help="LiPopt degree k (default max(3, depth+1))")
    b.add_argument("--time-limit", type=float, default=None, metavar="SECONDS", help="per item (solver)")
    b.add_argument("--out", required=True, metavar="FILE.csv|FILE.parquet", help="results; reused to resume")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS", help="an existing Dask scheduler")
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local worker processes (default: one per core; 0: serial, no Dask)")
    b.add_argument("--chunk-size", type=int, default=None, metavar="K", help="points per task (default auto)")
    b.add_argument("--max-items", type=int, default=None, metavar="K", help="compute at most K items in this run")
    b.add_argument("--retry-failed", action="store_true", help="recompute items that failed in an earlier run")
    b.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="report the fraction of points with certified upper bound <= T")
    b.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    b.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    return b


def batch_command(args) -> int:
    """Run ``lipopt batch`` from parsed arguments; prints the summary; returns the exit code."""
    X, labels = load_points(args.data)
    output = args.output
    if output is not None and output != "label":
        try:
            output = int(output)
        except ValueError:
            raise InvalidInputError(f"--output must be an integer or 'label', got {output!r}") from None
    try:
        summary = _run_from_args(args, X, labels, output)
    except KeyboardInterrupt:
        print(f"lipopt: interrupted; finished rows are saved in {args.out} (rerun the same command to resume)",
              file=sys.stderr)
        return 130
    summary["model"] = str(args.model)
    summary["data"] = str(args.data)
    if args.json:
        print(json.dumps(summary, sort_keys=True, default=float))
        return 0
    print(format_summary(summary))
    return 0


def _run_from_args(args, X, labels, output) -> dict:
    return run_batch(args.model, X, args.radius, ball=args.ball, clip=tuple(args.clip) if args.clip else None,
                     output=output, margin=tuple(args.margin) if args.margin else None, norm=args.norm,
                     method=args.method, degree=args.degree, time_limit=args.time_limit, out=args.out,
                     scheduler=args.scheduler, workers=args.workers, progress=not args.no_progress,
                     labels=labels, retry_failed=args.retry_failed, threshold=args.threshold,
                     chunk_size=args.chunk_size, max_items=args.max_items)


def format_summary(s: dict) -> str:
    where = f"l_{s['ball']} ball r={s['radius']:g}" + (f" clipped to [{s['clip'][0]:g}, {s['clip'][1]:g}]"
                                                         if s["clip"] else "")
    run = "serial" if s["workers"] == 0 else f"{s['workers']} worker(s), {s['chunk_size']} point(s)/task"
    lines = [f"batch        {s['points']} points, {where}, method {s['method']}, norm l_{s['norm']} -> {s['out']}",
             f"this run     computed {s['computed']} ({s['failed']} failed), skipped {s['skipped']} finished; "
             f"{s['seconds']:.1f} s" + (f", {s['points_per_minute']:.1f} points/min, {run}" if s["computed"] else ""),
             f"all          {s['done_ok']} ok, {s['failed_total']} failed, {s['remaining']} remaining"]
    for key, label in (("upper_bound", "upper bound"), ("gap", "gap")):
        q = s[key]
        if q:
            lines.append(f"{label:<12} min {q['min']:.6g}  p10 {q['p10']:.6g}  median {q['median']:.6g}  "
                         f"p90 {q['p90']:.6g}  max {q['max']:.6g}")
    if s.get("threshold") is not None:
        lines.append(f"certified    {s['certified']} / {s['points']} = {100 * s['certified_fraction']:.1f} % "
                     f"with upper bound <= {s['threshold']:g}")
    if s.get("lp_structure_reused") is not None:
        lines.append(f"LP structure reused from the cache for {100 * s['lp_structure_reused']:.0f} % of the points")
    if s.get("failed_verification"):
        lines.append(f"resume       {s['failed_verification']} rows failed verification and were "
                     + ("recomputed" if not s["remaining"] else "dropped (rerun to compute what remains)"))
    for f in s["failures"]:
        lines.append(f"failed       #{f['index']}: {f['error']}")
    if s["failed"] > len(s["failures"]):
        lines.append(f"             ... and {s['failed'] - len(s['failures'])} more (see {s['out']})")
    return "\n".join(lines)
