"""Command line: `lipopt bound|gap|inspect|batch MODEL ...`. The only module that knows about argument parsing.

Exit codes: 0 ok, 2 bad input (InvalidInputError), 3 solver failure or timeout (SolverFailure).
Errors are one line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings

import numpy as np

from . import memory, options
from .api import lower_bound, repr_domain, upper_bound
from .domain import Ball, Box
from .errors import InvalidInputError, SolverFailure
from .cli_batch import add_batch_parser, batch_command
from .gap import gap_report
from .inspect import summarize
from .methods import METHODS, check_degree, lower_methods, upper_methods
from .model import load, output_vector
from .model.safety import one_line as safe_line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        print(f"lipopt: error: {message}", file=sys.stderr)
        raise SystemExit(2)


UPPER_CHOICES = upper_methods()
LOWER_CHOICES = lower_methods()
LABELS = {name: m.label for name, m in METHODS.items()}


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lipopt", description="Certified upper bounds on the Lipschitz constant of neural networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    b = sub.add_parser("bound", help="bound the Lipschitz constant of a model")
    g = sub.add_parser("gap", help="every lower and upper bound for a model, with ratios and times")
    for q in (b, g):
        q.add_argument("model", help="model file (.npz, .onnx, .pt/.pth TorchScript)")
        q.add_argument("--norm", default="inf", choices=["inf", "2", "1"], help="input norm (default inf)")
        sel = q.add_mutually_exclusive_group()
        sel.add_argument("--output", type=int, default=None, metavar="I", help="bound output I")
        sel.add_argument("--margin", type=int, nargs=2, default=None, metavar=("I", "J"), help="bound f_I - f_J")
        q.add_argument("--samples", type=int, default=4096, help="gradient samples for the lower bound")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--json", action="store_true", help="print one JSON object")
        _domain_flags(q)
    b.add_argument("--method", default="lp", choices=UPPER_CHOICES + LOWER_CHOICES)
    b.add_argument("--degree", type=int, default=None, help="LiPopt degree k (default max(3, depth+1))")
    b.add_argument("--clique-size", type=int, default=None,
                   help="sdp2: variables per clique, a hidden neuron and its strongest inputs (default 4)")
    b.add_argument("--cliques", default="inputs", choices=["inputs", "units", "dense"])
    b.add_argument("--solver", default="highs", choices=["highs", "clarabel"], help="LP solver")
    b.add_argument("--sdp-solver", default="sdpa", choices=["sdpa", "scs", "clarabel"], help="SDP solver")
    b.add_argument("--lp-method", default="auto", choices=["auto", "simplex", "ipm", "ipm-nocrossover", "pdlp"])
    b.add_argument("--time-limit", type=float, default=None, metavar="SECONDS")
    b.add_argument("--lower-method", default="sampling", choices=LOWER_CHOICES,
                   help="lower bound reported next to the upper bound (default sampling)")
    g.add_argument("--time-limit", type=float, default=60.0, metavar="SECONDS", help="per method (default 60)")
    g.add_argument("--degrees", type=int, nargs="+", default=None, metavar="K",
                   help="LiPopt degrees to run (default max(3, depth+1))")
    i = sub.add_parser("inspect", help="layers, sparsity, cliques and estimated LP sizes of a model")
    i.add_argument("model")
    i.add_argument("--output", type=int, default=None, metavar="I")
    i.add_argument("--cliques", default="inputs", choices=["inputs", "units", "dense"])
    i.add_argument("--json", action="store_true")
    for sp_ in (b, g, i):
        sp_.add_argument("--input-shape", type=int, nargs="+", default=None, metavar="N",
                         help="input shape without batch (e.g. 1 28 28) for convolutional models")
        sp_.add_argument("--memory-limit", default=None, metavar="SIZE",
                         help="refuse methods whose estimated memory exceeds SIZE, e.g. 4GB "
                              "(default: half the physical memory)")
        sp_.add_argument("--trust-code", action="store_true",
                         help="allow .pt files that run code when loaded (TorchScript archives, pickled "
                              "modules); only for files you trust")
    add_batch_parser(sub)
    _experiment_parser(sub)
    return p


def _experiment_parser(sub) -> None:
    e = sub.add_parser("experiment", help="reproduce the paper's experiments and the Chen et al. (2020) "
                                          "benchmark: CSV, Markdown report and plots")
    from .experiments import EXPERIMENTS
    e.add_argument("name", choices=[*EXPERIMENTS, "all"], help="experiment to run")
    e.add_argument("--out", default="lipopt-experiments", metavar="DIR",
                   help="output directory: CSVs, report.md, plots/, cache/ (default ./lipopt-experiments)")
    e.add_argument("--quick", action="store_true", help="tiny sizes, 2 seeds, small budgets (under a minute)")
    e.add_argument("--slow", action="store_true", help="also the expensive cells (large networks, big LPs)")
    e.add_argument("--seeds", type=int, nargs="+", default=None, metavar="S", help="network seeds")
    e.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="lipopt time limit per cell (default per experiment and method)")
    e.add_argument("--jobs", type=int, default=None, metavar="N", help="cells at once (default: cores, max 2)")
    e.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _experiment(args) -> int:
    from .experiments import run_experiment
    s = run_experiment(args.name, args.out, quick=args.quick, seeds=args.seeds, time_limit=args.time_limit,
                       slow=args.slow, progress=not args.no_progress, jobs=args.jobs)
    for name, e in s["experiments"].items():
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(e["statuses"].items()))
        print(f"{name:<8} {e['cells']} cells ({e['computed']} computed, {e['cached']} cached, {e['skipped']} skipped) "
              f"in {e['seconds']:.1f} s; {statuses}; {e['csv']}")
    print(f"report   {s['report']}  ({s['seconds']:.1f} s)")
    return 0


def _domain_flags(q) -> None:
    dom = q.add_argument_group("local bound (default: global)")
    dom.add_argument("--center", metavar="X.npy", help="centre of the input ball")
    dom.add_argument("--radius", type=float, metavar="EPS", help="radius of the input ball")
    dom.add_argument("--ball", default="inf", choices=["inf", "2"], help="norm of the input ball (default inf)")
    dom.add_argument("--lower", metavar="L.npy", help="box lower corner (with --upper)")
    dom.add_argument("--upper", metavar="U.npy", help="box upper corner (with --lower)")
    dom.add_argument("--clip", type=float, nargs=2, metavar=("LO", "HI"), help="data range, e.g. 0 1 for pixels")
    dom.add_argument("--preactivation", default="linear", choices=["linear", "interval"],
                     help="pre-activation bounds over the domain (default linear, CROWN-style)")


# API names in error messages -> the flags a CLI user types (errors come from the API, which names
# options by their Python names; the CLI speaks in flags)
_NOT_A_FLAG = r"(?<![-\w])"  # a bare name, not already part of a --flag (else "--samples" -> "----samples")
CLI_SPELLING = [
    (re.compile(r"input_shape=\(C, H, W\)|input_shape=\([^)]*\)"), "--input-shape C H W"),
    (re.compile(r"trust_code=True"), "--trust-code"), (re.compile(r"allow_pickle=True"), "--trust-code"),
    (re.compile(r"\b(time_limit|memory_limit|input_shape|clique_size|lp_method|sdp_solver|max_columns|"
                r"trust_code|lower_method|chunk_size|max_items)\b"), lambda m: "--" + m.group(1).replace("_", "-")),
    (re.compile(_NOT_A_FLAG + r"(samples|seeds?|degree|norm|cliques|solver|preactivation|coverage|radius|center|"
                r"lower|upper|clip|ball|output|margin|method|workers|jobs|threshold|out)\b(?= must| contains)"),
     lambda m: "--" + m.group(1)),
    # API messages that name an option without "must" (domain, output selection, batch, experiment)
    (re.compile(_NOT_A_FLAG + r"(output|margin) index\b"), lambda m: f"--{m.group(1)} index"),
    (re.compile(_NOT_A_FLAG + r"margin needs\b"), "--margin needs"),
    (re.compile(_NOT_A_FLAG + r"degree (?=-?\d+ is above)"), "--degree "),
    (re.compile(r"\bempty box: lower > upper\b"), "empty box: --lower > --upper"),
    (re.compile(r"\bbox bounds must\b"), "box bounds (--lower/--upper) must"),
    (re.compile(r"\bthe ball center lies outside the data range clip\b"),
     "the ball --center lies outside the data range --clip"),
    (re.compile(_NOT_A_FLAG + r"scheduler address\b"), "--scheduler address"),
    (re.compile(r"^data (?=file\b|')"), "--data "),
    (re.compile(r"^the points have\b"), "the points of --data have"),
    (re.compile(r"^output directory\b"), "--out directory"),
    (re.compile(r"--trust-code \(CLI\) or --trust-code \(API\)"), "--trust-code"),
    # the registry's refusal sentence: "<method> (<label>) supports norms ..." names the --method
    (re.compile(r"^([a-z0-9-]+) (\((?:[^()]|\([^()]*\))*\) (?:supports|needs|enumerates) )"), r"--method \1 \2"),
    (re.compile(r"(supports norms [^;]*; got )(inf|2|1)\b"), r"\1--norm \2"),
]
def one_line(message: str, cli: bool = True) -> str:
    """The message on one line, without escape sequences or control characters (model.safety.one_line),
    in CLI spelling."""
    text = safe_line(message, 2000)
    if cli:
        for pattern, repl in CLI_SPELLING:
            text = pattern.sub(repl, text)
    return text


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = {"bound": _bound, "gap": _gap, "inspect": _inspect, "batch": batch_command,
                    "experiment": _experiment}[args.command](args)
        except InvalidInputError as exc:
            print(f"lipopt: error: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
            return 2
        except SolverFailure as exc:
            print(f"lipopt: solver failure: {one_line(exc) or type(exc).__name__}", file=sys.stderr)
            return 3
        except MemoryError:
            print("lipopt: error: out of memory; lower --memory-limit so that the size checks refuse earlier, "
                  "or use --method product", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print("lipopt: interrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # a bug: still one line, never a traceback (and never a number)
            print(f"lipopt: internal error: {type(exc).__name__}: {one_line(exc, cli=False)} (please report it)",
                  file=sys.stderr)
            return 1
    # our own warnings (e.g. --trust-code) are worth a line each; foreign library chatter is not
    for w in {one_line(w.message) for w in caught if _ours(w)}:
        print(f"lipopt: warning: {w}", file=sys.stderr)
    return code


def _ours(w) -> bool:
    return "lipopt" in str(getattr(w, "filename", "")) or issubclass(w.category, UserWarning) and \
        "lipopt" in str(w.message)


def _load(args):
    shape = tuple(args.input_shape) if args.input_shape else None
    if shape is not None:
        options.input_shape(shape)
    net = load(args.model, input_shape=shape, trust_code=args.trust_code)
    if shape is not None and math.prod(shape) != net.widths[0]:
        raise InvalidInputError(f"--input-shape {' '.join(map(str, shape))} has {math.prod(shape):,} entries but "
                                f"the model has {net.widths[0]:,} inputs")
    return net


def _inspect(args) -> int:
    net = _load(args)
    with memory.limit(options.memory_limit(args.memory_limit)):
        info = summarize(net, output_vector(net, args.output), cliques=args.cliques)
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    print(f"model       {args.model}: widths {'-'.join(map(str, info['widths']))}, {info['depth']} hidden layer(s), "
          f"{info['parameters']:,} nonzero parameters, {info['paths']:,} nonzero paths")
    for L in info["layers"]:
        print(f"  layer {L['layer']}: {L['shape'][0]} x {L['shape'][1]}, {L['nonzeros']:,} nonzeros "
              f"({100 * L['density']:.1f} % dense), {L['activation']}")
    for line in info.get("graph", ()):  # graph networks: nodes in topological order, skip edges marked
        print(f"  {line}")
    if "cliques" in info:
        cs = info["clique_size"]
        mono = f"{info['monomials']:,} monomials" if "monomials" in info else f"at most {info['paths']:,} monomials"
        print(f"polynomial  {info['variables']:,} variables, {mono}")
        print(f"cliques     {info['cliques']} ({args.cliques}), size min {cs['min']} / mean {cs['mean']:.1f} / max {cs['max']}")
        for k, cols in info["lp_columns_estimate"].items():
            print(f"  LiPopt-{k}: at most {cols:,} LP columns")
    return 0


def _array(path: str, n: int, what: str):
    """A real, finite vector of n entries from a .npy file (no pickles: nothing runs from the file)."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        # numpy's advice to pass allow_pickle=True is not one to give: pickles run code when loaded
        detail = "not a .npy file, or pickled objects, which are never loaded" if "pickle" in str(exc) else exc
        raise InvalidInputError(f"{what} {path}: not a readable .npy array ({detail})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        # complex -> float64 drops the imaginary part and numeric strings convert silently: a different
        # domain than the file states, hence a bound for the wrong set
        raise InvalidInputError(f"{what} {path}: must hold real numbers, got dtype "
                                f"{getattr(a, 'dtype', type(a).__name__)}")
    a = np.asarray(a, dtype=np.float64).ravel()
    if a.size != n:
        raise InvalidInputError(f"{what} {path} has {a.size} entries but the model has {n} inputs")
    if not np.all(np.isfinite(a)):
        raise InvalidInputError(f"{what} {path} contains NaN or Inf")
    return a


def _domain(args, n: int):
    """Box or Ball from the flags, or None for a global bound."""
    ball = args.center is not None or args.radius is not None
    box = args.lower is not None or args.upper is not None
    if ball and box:
        raise InvalidInputError("give either --center/--radius or --lower/--upper, not both")
    clip = tuple(args.clip) if args.clip else None
    if clip and not (all(math.isfinite(v) for v in clip) and clip[0] <= clip[1]):
        raise InvalidInputError(f"--clip must be finite with LO <= HI, got {clip[0]:g} {clip[1]:g}")
    if ball:
        if args.center is None or args.radius is None:
            raise InvalidInputError("--center and --radius go together")
        if not (math.isfinite(args.radius) and args.radius >= 0):
            raise InvalidInputError(f"--radius must be a finite number >= 0, got {args.radius:g}")
        return Ball(_array(args.center, n, "--center"), args.radius, args.ball, clip=clip)
    if box:
        if args.lower is None or args.upper is None:
            raise InvalidInputError("--lower and --upper go together")
        lo, hi = _array(args.lower, n, "--lower"), _array(args.upper, n, "--upper")
        if np.any(lo > hi):
            raise InvalidInputError(f"--lower must be <= --upper everywhere; not at coordinates "
                                    f"{np.flatnonzero(lo > hi)[:5].tolist()}")
        return Box(lo, hi, clip=clip)
    if clip:
        raise InvalidInputError("--clip needs a domain (--center/--radius or --lower/--upper)")
    return None


def _bound(args) -> int:
    net = _load(args)
    margin = tuple(args.margin) if args.margin else None
    if args.samples < 1:
        raise InvalidInputError(f"--samples must be positive, got {args.samples}")
    domain = _domain(args, net.widths[0])
    if args.method in LOWER_CHOICES:
        res = lower_bound(net, norm=args.norm, method=args.method, output=args.output, margin=margin,
                          samples=args.samples, seed=args.seed, domain=domain,
                          time_limit=5.0 if args.time_limit is None else args.time_limit,
                          memory_limit=args.memory_limit)
    else:
        res = upper_bound(net, norm=args.norm, method=args.method, degree=args.degree,
                          output=args.output, margin=margin, cliques=args.cliques, solver=args.solver,
                          lp_method=args.lp_method, time_limit=args.time_limit, lower=args.lower_method,
                          sdp_solver=args.sdp_solver, clique_size=args.clique_size,
                          samples=args.samples, seed=args.seed, domain=domain,
                          preactivation=args.preactivation, memory_limit=args.memory_limit)
    if args.json:
        d = res.to_dict()
        if args.method in LOWER_CHOICES:
            d["details"].pop("witness", None)
        d["model"] = args.model
        print(json.dumps(d, sort_keys=True))
        return 0
    widths = "-".join(str(w) for w in net.widths)
    print(f"model        {args.model}  ({widths}, {net.depth} hidden layer(s), {net.n_params:,} nonzero parameters)")
    label = LABELS[res.method].format(degree=res.degree, algorithm=res.details.get("algorithm"),
                                      best=res.details.get("best_method"))
    print(f"method       {label}, norm l_{res.norm}")
    if domain is not None:
        d = res.details
        extra = (f", {d['preactivation']} pre-activation bounds, {d['fixed_neurons']} of {d['hidden_neurons']} "
                 "neurons fixed") if "fixed_neurons" in d else ""
        print(f"domain       {repr_domain(domain)}{extra}")
    if res.upper_bound is not None:
        note = METHODS[res.method].note
        if note is not None:
            extra = f"  ({note(res)})"
        elif res.raw_value is not None:
            extra = f"  (certified; solver optimum {res.raw_value:.10g})"
        else:
            extra = "  (certified)"
        print(f"upper bound  {res.upper_bound:.10g}{extra}")
    lower_method = res.method if res.method in LOWER_CHOICES else res.details.get("lower_bound_method")
    how = {"ascent": "local search + realised FGL maximiser", "exact witness": "the MIP's witness"}.get(
        lower_method, "sampling + local search in the domain" if domain is not None else f"{args.samples} samples")
    print(f"lower bound  {res.lower_bound:.10g}  (max gradient norm, {how}, seed {args.seed})")
    if res.gap is not None:
        print(f"gap          {res.gap:.4f}x  (upper / lower)")
    for line in METHODS[res.method].describe(res) if METHODS[res.method].describe else ():
        print(line)
    t = ", ".join(f"{k} {v:.3f} s" for k, v in res.timings.items())
    print(f"time         {res.seconds:.3f} s  ({t})")
    return 0


def _gap(args) -> int:
    net = _load(args)
    margin = tuple(args.margin) if args.margin else None
    output_vector(net, args.output, margin)  # a bad selection is bad input, not a table of failed rows
    options.samples(args.samples)
    options.seed(args.seed)
    options.time_limit(args.time_limit, allow_none=False)
    for k in args.degrees or ():
        check_degree(k)
    limit = options.memory_limit(args.memory_limit)
    domain = _domain(args, net.widths[0])
    widths = "-".join(str(w) for w in net.widths)
    where = repr_domain(domain) if domain is not None else "global"

    def show(r):  # rows stream as they finish (the report itself comes at the end)
        v = f"{r['value']:.8g}" if r["value"] is not None else "-"
        status = r["status"] if r["error"] is None else f"failed: {r['error']}"
        print(f"{r['kind']:5} {r['method']:<12} {v:>14} {r['seconds']:>9.3f}  {status}", flush=True)

    if not args.json:
        print(f"model {args.model} ({widths}), norm l_{args.norm}, {where}; time limit {args.time_limit:g} s per "
              f"method", flush=True)
        print(f"{'':5} {'method':<12} {'value':>14} {'seconds':>9}  status", flush=True)
    with memory.limit(limit):
        rep = gap_report(net, norm=args.norm, output=args.output, margin=margin, domain=domain,
                         time_limit=args.time_limit, degrees=args.degrees, samples=args.samples, seed=args.seed,
                         on_row=None if args.json else show, preactivation=args.preactivation)
    if args.json:
        rep["model"] = args.model
        print(json.dumps(rep, sort_keys=True, default=str))
        return 0
    print(f"{'':5} {'method':<12} {'value':>14} {'/ lower':>9} {'/ FGL':>9}")
    for r in rep["rows"]:
        v = f"{r['value']:.8g}" if r["value"] is not None else "-"
        rl = f"{r['ratio_to_lower']:.4f}" if r["ratio_to_lower"] else "-"
        rf = f"{r['ratio_to_fgl']:.4f}" if r["ratio_to_fgl"] else "-"
        print(f"{r['kind']:5} {r['method']:<12} {v:>14} {rl:>9} {rf:>9}")
    if rep["best_lower"] and rep["best_upper"]:
        print(f"gap   best upper / best lower = {rep['best_upper'] / rep['best_lower']:.4f}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
