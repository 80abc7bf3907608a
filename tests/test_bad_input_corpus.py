"""Bad-input corpus: every malformed model file and every bad option, for every command, must end in
exit code 2, exactly one stderr line "lipopt: ...", no traceback, no escape/control characters, nothing
on stdout, and no code run from a file (payload markers never appear).

The files are built in tmp_path by one small builder per file kind (tests/corpus/builders.py; torch and
onnx ones once per module). Every case runs in-process through ``lipopt.cli.main``, a few also through a
subprocess (to see fd 2). Model-file cases run for each command that reads a model: bound, gap, inspect,
batch. Decisions: bool weights are numeric 0/1 and accepted; ``--margin I I`` is refused (f_I - f_I = 0).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from corpus.builders import (Files, ReduceOpen, Shared, flip_member, good_arrays, npy_bytes, npz_bytes,
                             set_compression_method, zip_bytes)
from lipopt.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MODEL_COMMANDS = ("bound", "gap", "inspect", "batch")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """torch/onnx files, built once per module on first use."""
    return Shared(tmp_path_factory.mktemp("corpus_shared"))


# ------------------------------------------------------------------------------------------ the corpus

@dataclass
class ModelCase:
    id: str
    build: Callable[[Files], str]
    payload: str | None = None        # marker kind that must never appear
    extra: tuple = ()                 # more flags (not for batch)
    commands: tuple = MODEL_COMMANDS
    message: str | None = None        # substring the error line must contain


def _forged(shape, descr="<f8", nbytes=16, fortran=False):
    return lambda f: f.raw("m.npz", zip_bytes({**{k + ".npy": npy_bytes(v) for k, v in good_arrays().items()},
                                               "W0.npy": npy_bytes(None, {"descr": descr, "fortran_order": fortran,
                                                                          "shape": shape}, b"\0" * nbytes)}))


def _structured():
    return np.zeros((4, 3), dtype=[("a", "<f8"), ("b", "<i4")])


MODEL_CASES = [
    # -- files that are not models at all
    ModelCase("missing-file", lambda f: str(f.tmp / "nope.npz"), message="no such file"),
    ModelCase("missing-onnx", lambda f: str(f.tmp / "nope.onnx")),
    ModelCase("missing-pt", lambda f: str(f.tmp / "nope.pt")),
    ModelCase("directory-npz", lambda f: (f.tmp / "dir.npz").mkdir() or str(f.tmp / "dir.npz")),
    ModelCase("directory-pt", lambda f: (f.tmp / "dir.pt").mkdir() or str(f.tmp / "dir.pt")),
    ModelCase("empty-npz", lambda f: f.raw("m.npz", b"")),
    ModelCase("empty-onnx", lambda f: f.raw("m.onnx", b"")),
    ModelCase("empty-pt", lambda f: f.raw("m.pt", b"")),
    ModelCase("wrong-extension-h5", lambda f: f.raw("m.h5", npz_bytes(**good_arrays())), message="unsupported"),
    ModelCase("wrong-extension-npy", lambda f: f.raw("m.npy", npy_bytes(good_arrays()["W0"]))),
    ModelCase("no-extension", lambda f: f.raw("model", npz_bytes(**good_arrays()))),
    ModelCase("text-as-npz", lambda f: f.text("m.npz")),
    ModelCase("text-as-onnx", lambda f: f.text("m.onnx")),
    ModelCase("text-as-pt", lambda f: f.text("m.pt")),
    ModelCase("text-as-pth", lambda f: f.text("m.pth", "\x1b[31mred\x1b[0m\nsecond line\r\x07")),
    ModelCase("hostile-file-name", lambda f: f.text("evil\x1b[2J\x1b]0;title\x07\nname.npz")),
    # -- npz archives that are damaged
    ModelCase("npy-under-npz-name", lambda f: f.raw("m.npz", npy_bytes(good_arrays()["W0"]))),
    ModelCase("npz-truncated-half", lambda f: f.raw("m.npz", npz_bytes(**good_arrays())[:300])),
    ModelCase("npz-truncated-tail", lambda f: f.raw("m.npz", npz_bytes(**good_arrays())[:-10])),
    ModelCase("npz-compressed-corrupt", lambda f: f.raw(
        "m.npz", flip_member(npz_bytes(True, **good_arrays()), "W0.npy"))),
    ModelCase("npz-stored-flipped-crc", lambda f: f.raw(
        "m.npz", flip_member(npz_bytes(**good_arrays()), "W0.npy", at=0.99))),
    ModelCase("npz-unsupported-compression", lambda f: f.raw(
        "m.npz", set_compression_method(npz_bytes(**good_arrays()), 99))),
    ModelCase("npz-member-not-npy", lambda f: f.raw(
        "m.npz", zip_bytes({**{k + ".npy": npy_bytes(v) for k, v in good_arrays().items()}, "W1.npy": b"text"}))),
    ModelCase("npz-duplicate-member", lambda f: f.raw(
        "m.npz", zip_bytes([(k + ".npy", npy_bytes(v)) for k, v in good_arrays().items()]
                           + [("W0.npy", npy_bytes(np.zeros((4, 3))))]))),
    ModelCase("npz-forged-huge-shape", _forged((100_000, 100_000))),
    ModelCase("npz-forged-negative-shape", _forged((-4, 3))),
    ModelCase("npz-forged-short-data", _forged((4, 3), nbytes=8)),
    ModelCase("npz-forged-object-header", _forged((4, 3), descr="|O")),
    # -- npz structure
    ModelCase("npz-no-weights", lambda f: f.npz(x=np.zeros(3)), message="no weight arrays"),
    ModelCase("npz-empty-archive", lambda f: f.raw("m.npz", zip_bytes({}))),
    ModelCase("npz-missing-W1", lambda f: f.npz(W0=np.ones((4, 3)), b0=np.ones(4), W2=np.ones((2, 4)),
                                                b2=np.ones(2)), message="W1"),
    ModelCase("npz-missing-b0", lambda f: f.bad_npz(b0=None), message="b0"),
    ModelCase("npz-W-shape-mismatch", lambda f: f.bad_npz(W1=np.ones((2, 5)))),
    ModelCase("npz-b-length-mismatch", lambda f: f.bad_npz(b0=np.ones(5))),
    ModelCase("npz-b-2d", lambda f: f.bad_npz(b0=np.ones((4, 2)))),
    ModelCase("npz-W-1d", lambda f: f.bad_npz(W0=np.ones(12))),
    ModelCase("npz-W-3d", lambda f: f.bad_npz(W0=np.ones((4, 3, 1)))),
    ModelCase("npz-W-scalar", lambda f: f.bad_npz(W0=np.float64(1.0))),
    ModelCase("npz-W-empty", lambda f: f.bad_npz(W0=np.ones((4, 0)))),
    ModelCase("npz-zero-width-layer", lambda f: f.bad_npz(W0=np.ones((0, 3)), b0=np.ones(0),
                                                          W1=np.ones((2, 0)))),
    # -- npz dtypes and values
    ModelCase("npz-complex", lambda f: f.bad_npz(W0=np.ones((4, 3)) * (1 + 1j)), message="complex"),
    ModelCase("npz-datetime64", lambda f: f.bad_npz(W0=np.zeros((4, 3), "datetime64[s]"))),
    ModelCase("npz-timedelta64", lambda f: f.bad_npz(W0=np.zeros((4, 3), "timedelta64[s]"))),
    ModelCase("npz-object", lambda f: f.bad_npz(W0=np.ones((4, 3)).astype(object))),
    ModelCase("npz-object-payload", lambda f: f.bad_npz(W0=np.array([ReduceOpen(f.marker("npz-object"))],
                                                                    dtype=object)), payload="npz-object"),
    ModelCase("npz-unicode", lambda f: f.bad_npz(W0=np.full((4, 3), "1.0"))),
    ModelCase("npz-bytes", lambda f: f.bad_npz(W0=np.full((4, 3), b"1.0"))),
    ModelCase("npz-structured", lambda f: f.bad_npz(W0=_structured())),
    ModelCase("npz-void", lambda f: f.bad_npz(W0=np.zeros((4, 3), "V8"))),
    ModelCase("npz-nan-W", lambda f: f.bad_npz(W0=np.where(np.eye(4, 3) > 0, np.nan, 1.0)), message="NaN"),
    ModelCase("npz-inf-W", lambda f: f.bad_npz(W1=np.full((2, 4), np.inf))),
    ModelCase("npz-neg-inf-b", lambda f: f.bad_npz(b0=np.array([0, -np.inf, 0, 0]))),
    ModelCase("npz-nan-b-last", lambda f: f.bad_npz(b1=np.array([np.nan, 0.0]))),
    ModelCase("npz-float16-inf", lambda f: f.bad_npz(W0=np.full((4, 3), np.inf, np.float16))),
    # -- activations
    ModelCase("act-unknown", lambda f: f.bad_npz(activations=np.array(["swish9"])), message="swish9"),
    ModelCase("act-escape", lambda f: f.bad_npz(activations=np.array(["\x1b[31mrelu\nrm -rf /"]))),
    ModelCase("act-too-many", lambda f: f.bad_npz(activations=np.array(["relu", "relu"]))),
    ModelCase("act-empty", lambda f: f.bad_npz(activations=np.array([], dtype="U4"))),
    ModelCase("act-int-dtype", lambda f: f.bad_npz(activations=np.array([1]))),
    ModelCase("act-object", lambda f: f.bad_npz(activations=np.array(["relu"], dtype=object))),
    ModelCase("act-2d", lambda f: f.bad_npz(activations=np.array([["relu"]]))),
    # -- torch
    ModelCase("ts-plain", lambda f: f.get("ts-plain"), message="--trust-code"),
    ModelCase("ts-payload", lambda f: f.get("ts-payload"), payload="ts-payload"),
    ModelCase("ts-payload-nested", lambda f: f.get("ts-payload-nested"), payload="ts-payload-nested"),
    ModelCase("ts-flipped-trusted", lambda f: f.get("ts-flipped"), extra=("--trust-code",),
              commands=("bound", "gap", "inspect")),
    ModelCase("pickled-module-payload", lambda f: f.get("pickled-module-payload"),
              payload="pickled-module-payload"),
    ModelCase("pickled-module-payload-legacy", lambda f: f.get("pickled-module-payload-legacy"),
              payload="pickled-module-payload-legacy"),
    ModelCase("pickled-system-payload", lambda f: f.get("pickled-system-payload"),
              payload="pickled-system-payload"),
    ModelCase("pickled-plain-module", lambda f: f.get("pickled-plain-module"), message="--trust-code"),
    ModelCase("torch-state-dict", lambda f: f.get("state-dict"), message="architecture"),
    ModelCase("torch-tensor", lambda f: f.get("tensor")),
    ModelCase("torch-list", lambda f: f.get("tensor-list")),
    ModelCase("torch-plain-dict", lambda f: f.get("plain-dict")),
    ModelCase("torch-flipped", lambda f: f.get("torch-flipped")),
    ModelCase("torch-truncated", lambda f: f.get("torch-truncated")),
    ModelCase("torch-npz-bytes", lambda f: f.raw("m.pt", npz_bytes(**good_arrays()))),
    # -- onnx
    ModelCase("onnx-garbage", lambda f: f.raw("m.onnx", b"\x0a\xff\xff\xff\xff\x0f\x1b[31m garbage \n two")),
    ModelCase("onnx-truncated", lambda f: f.get("onnx-truncated")),
    ModelCase("onnx-unsupported-op", lambda f: f.get("onnx-unsupported-op"), message="Sin"),
    ModelCase("onnx-two-inputs", lambda f: f.get("onnx-two-inputs")),
    ModelCase("onnx-external-parent", lambda f: f.get("onnx-external-parent")),
    ModelCase("onnx-external-absolute", lambda f: f.get("onnx-external-absolute")),
    ModelCase("onnx-nan-weight", lambda f: f.get("onnx-nan"), message="NaN"),
    ModelCase("onnx-shape-mismatch", lambda f: f.get("onnx-shape-mismatch")),
    ModelCase("onnx-npz-bytes", lambda f: f.raw("m.onnx", npz_bytes(**good_arrays()))),
]


def _model_params():
    return [pytest.param(c, cmd, id=f"{c.id}-{cmd}") for c in MODEL_CASES for cmd in c.commands]


def _model_argv(case: ModelCase, command: str, f: Files) -> list[str]:
    model = case.build(f)
    if command == "batch":
        return ["batch", model, "--data", f.data(), "--radius", "0.1", "--out", str(f.tmp / "out.csv"),
                "--workers", "0", "--no-progress"]
    base = {"bound": ["--output", "0", "--method", "product"],
            "gap": ["--output", "0", "--time-limit", "5", "--degrees", "3"], "inspect": ["--output", "0"]}[command]
    return [command, model, *base, *case.extra]


@dataclass
class OptionCase:
    id: str
    argv: Callable[[Files], list]     # the whole argv after the command
    command: str = "bound"
    flag: str | None = None           # CLI spelling the error line must contain
    code: int = 2
    payload: str | None = None


def B(f):  # the good model with a valid selection and a fast method: only the bad option can fail
    return [f.good(), "--output", "0", "--method", "product"]


def G(f):
    return [f.good(), "--output", "0", "--time-limit", "5", "--degrees", "3"]


def I(f):
    return [f.good(), "--output", "0"]


def BATCH(f, *skip):
    base = {"--data": f.data(), "--radius": "0.1", "--out": str(f.tmp / "out.csv"), "--workers": "0"}
    return [f.good(), "--no-progress", "--output", "0",
            *[x for k, v in base.items() if k not in skip for x in (k, v)]]


def E(f, *skip):
    return ["--quick", "--no-progress"] + ([] if "--out" in skip else ["--out", str(f.tmp / "exp")])


def _center(f, values, name="c.npy"):
    return ["--center", f.npy(name, np.asarray(values)), "--radius", "0.1"]


def _box(f, lo, hi):
    return ["--lower", f.npy("lo.npy", np.asarray(lo, float)), "--upper", f.npy("hi.npy", np.asarray(hi, float))]


def O(id, argv, command="bound", flag=None, code=2, payload=None):  # noqa: E743 - short on purpose
    return OptionCase(id, argv, command, flag, code, payload)


OPTION_CASES = [
    # -- bound: numeric options
    O("seed-negative", lambda f: [*B(f), "--seed", "-1"], flag="--seed"),
    O("seed-too-big", lambda f: [*B(f), "--seed", str(2**64)], flag="--seed"),
    O("seed-not-int", lambda f: [*B(f), "--seed", "abc"], flag="--seed"),
    O("samples-zero", lambda f: [*B(f), "--samples", "0"], flag="--samples"),
    O("samples-negative", lambda f: [*B(f), "--samples", "-5"], flag="--samples"),
    O("samples-huge", lambda f: [*B(f), "--samples", "100000000"], flag="--samples"),
    O("samples-float", lambda f: [*B(f), "--samples", "1.5"], flag="--samples"),
    O("time-limit-zero", lambda f: [*B(f), "--time-limit", "0"], flag="--time-limit"),
    O("time-limit-negative", lambda f: [*B(f), "--time-limit", "-1"], flag="--time-limit"),
    O("time-limit-nan", lambda f: [*B(f), "--time-limit", "nan"], flag="--time-limit"),
    O("time-limit-inf", lambda f: [*B(f), "--time-limit", "inf"], flag="--time-limit"),
    O("time-limit-huge", lambda f: [*B(f), "--time-limit", "1e300"], flag="--time-limit"),
    O("time-limit-lower-method", lambda f: [*B(f)[:3], "--method", "sampling", "--time-limit", "0"],
      flag="--time-limit"),
    O("samples-huge-lower-method", lambda f: [*B(f)[:3], "--method", "sampling", "--samples", "100000000"],
      flag="--samples"),
    O("degree-zero", lambda f: [*B(f), "--degree", "0"], flag="--degree"),
    O("degree-negative", lambda f: [*B(f), "--degree", "-1"], flag="--degree"),
    O("degree-huge", lambda f: [*B(f), "--degree", "1000"], flag="--degree"),
    O("degree-lp-huge", lambda f: [*B(f)[:3], "--method", "lp", "--degree", "1000"], flag="--degree"),
    O("clique-size-zero", lambda f: [*B(f), "--clique-size", "0"], flag="--clique-size"),
    O("clique-size-sdp2-zero", lambda f: [*B(f)[:3], "--method", "sdp2", "--clique-size", "0"],
      flag="--clique-size"),
    O("output-negative", lambda f: [f.good(), "--method", "product", "--output", "-1"], flag="--output"),
    O("output-too-big", lambda f: [f.good(), "--method", "product", "--output", "99"], flag="--output"),
    O("output-missing", lambda f: [f.good(), "--method", "product"], flag="--output"),
    O("margin-same", lambda f: [f.good(), "--method", "product", "--margin", "0", "0"], flag="--margin"),
    O("margin-out-of-range", lambda f: [f.good(), "--method", "product", "--margin", "0", "99"], flag="--margin"),
    O("margin-one-value", lambda f: [f.good(), "--method", "product", "--margin", "0"], flag="--margin"),
    O("output-and-margin", lambda f: [*B(f), "--margin", "0", "1"], flag="--margin"),
    O("memory-limit-zero", lambda f: [*B(f), "--memory-limit", "0"], flag="--memory-limit"),
    O("memory-limit-text", lambda f: [*B(f), "--memory-limit", "abc"], flag="--memory-limit"),
    O("memory-limit-1KB", lambda f: [*B(f), "--memory-limit", "1KB"], flag="--memory-limit"),
    O("memory-limit-nan", lambda f: [*B(f), "--memory-limit", "nanGB"], flag="--memory-limit"),
    # -- bound: enumerated options and unknown flags
    O("norm-3", lambda f: [*B(f), "--norm", "3"], flag="--norm"),
    O("method-nonsense", lambda f: [f.good(), "--output", "0", "--method", "nonsense"], flag="--method"),
    O("ball-3", lambda f: [*B(f), *_center(f, [0, 0, 0]), "--ball", "3"], flag="--ball"),
    O("lp-method-bogus", lambda f: [*B(f), "--lp-method", "bogus"], flag="--lp-method"),
    O("preactivation-bogus", lambda f: [*B(f), "--preactivation", "magic"], flag="--preactivation"),
    O("unknown-flag", lambda f: [*B(f), "--bogus-flag"], flag="--bogus-flag"),
    O("no-model", lambda f: [], flag="model"),
    O("lp-norm-2", lambda f: [*B(f)[:3], "--method", "lp", "--norm", "2"], flag="--method"),
    O("lipsdp-norm-inf", lambda f: [*B(f)[:3], "--method", "lipsdp", "--norm", "inf"], flag="--method"),
    O("exact-no-domain", lambda f: [*B(f)[:3], "--method", "exact"], flag="--center"),
    # -- bound: domain
    O("center-missing-file", lambda f: [*B(f), "--center", str(f.tmp / "none.npy"), "--radius", "0.1"],
      flag="--center"),
    O("center-wrong-length", lambda f: [*B(f), *_center(f, [0.0, 0.0])], flag="--center"),
    O("center-nan", lambda f: [*B(f), *_center(f, [0.0, np.nan, 0.0])], flag="--center"),
    O("center-inf", lambda f: [*B(f), *_center(f, [0.0, np.inf, 0.0])], flag="--center"),
    O("center-text-file", lambda f: [*B(f), "--center", f.text("c.npy"), "--radius", "0.1"], flag="--center"),
    O("center-complex", lambda f: [*B(f), *_center(f, np.array([1 + 1j, 0, 0]))], flag="--center"),
    O("center-strings", lambda f: [*B(f), *_center(f, np.array(["0", "0", "0"]))], flag="--center"),
    O("center-datetime", lambda f: [*B(f), *_center(f, np.zeros(3, "datetime64[s]"))], flag="--center"),
    O("center-pickle-payload", lambda f: [*B(f), *_center(f, np.array([ReduceOpen(f.marker("center")), 0, 0],
                                                                      dtype=object))],
      flag="--center", payload="center"),
    O("center-without-radius", lambda f: [*B(f), "--center", f.npy("c.npy", np.zeros(3))], flag="--radius"),
    O("radius-negative", lambda f: [*B(f), "--center", f.npy("c.npy", np.zeros(3)), "--radius", "-1"],
      flag="--radius"),
    O("radius-nan", lambda f: [*B(f), "--center", f.npy("c.npy", np.zeros(3)), "--radius", "nan"],
      flag="--radius"),
    O("radius-inf", lambda f: [*B(f), "--center", f.npy("c.npy", np.zeros(3)), "--radius", "inf"],
      flag="--radius"),
    O("lower-above-upper", lambda f: [*B(f), *_box(f, [1, 1, 1], [0, 2, 2])], flag="--lower"),
    O("lower-without-upper", lambda f: [*B(f), "--lower", f.npy("lo.npy", np.zeros(3))], flag="--upper"),
    O("lower-nan", lambda f: [*B(f), *_box(f, [0, np.nan, 0], [1, 1, 1])], flag="--lower"),
    O("upper-wrong-length", lambda f: [*B(f), *_box(f, [0, 0, 0], [1, 1])], flag="--upper"),
    O("upper-inf", lambda f: [*B(f), *_box(f, [0, 0, 0], [1, np.inf, 1])], flag="--upper"),
    O("ball-and-box", lambda f: [*B(f), *_center(f, [0, 0, 0]), *_box(f, [0, 0, 0], [1, 1, 1])], flag="--center"),
    O("clip-reversed", lambda f: [*B(f), *_center(f, [0.5, 0.5, 0.5]), "--clip", "1", "0"], flag="--clip"),
    O("clip-nan", lambda f: [*B(f), *_center(f, [0.5, 0.5, 0.5]), "--clip", "nan", "1"], flag="--clip"),
    O("clip-without-domain", lambda f: [*B(f), "--clip", "0", "1"], flag="--clip"),
    O("clip-excludes-center", lambda f: [*B(f), *_center(f, [5, 5, 5]), "--clip", "0", "1"], flag="--clip"),
    O("input-shape-zero", lambda f: [*B(f), "--input-shape", "0"], flag="--input-shape"),
    O("input-shape-negative", lambda f: [*B(f), "--input-shape", "-3", "4"], flag="--input-shape"),
    O("input-shape-wrong-product", lambda f: [*B(f), "--input-shape", "2", "2"], flag="--input-shape"),
    # -- gap
    O("gap-degrees-zero", lambda f: [*G(f)[:-2], "--degrees", "0"], "gap", flag="--degree"),
    O("gap-degrees-huge", lambda f: [*G(f)[:-2], "--degrees", "3", "1000"], "gap", flag="--degree"),
    O("gap-time-limit-zero", lambda f: [*G(f), "--time-limit", "0"], "gap", flag="--time-limit"),
    O("gap-time-limit-nan", lambda f: [*G(f), "--time-limit", "nan"], "gap", flag="--time-limit"),
    O("gap-time-limit-inf", lambda f: [*G(f), "--time-limit", "inf"], "gap", flag="--time-limit"),
    O("gap-samples-zero", lambda f: [*G(f), "--samples", "0"], "gap", flag="--samples"),
    O("gap-seed-negative", lambda f: [*G(f), "--seed", "-1"], "gap", flag="--seed"),
    O("gap-memory-limit", lambda f: [*G(f), "--memory-limit", "1KB"], "gap", flag="--memory-limit"),
    O("gap-output-too-big", lambda f: [f.good(), "--output", "99", "--time-limit", "5"], "gap", flag="--output"),
    O("gap-margin-same", lambda f: [f.good(), "--margin", "1", "1", "--time-limit", "5"], "gap", flag="--margin"),
    O("gap-radius-negative", lambda f: [*G(f), "--center", f.npy("c.npy", np.zeros(3)), "--radius", "-1"], "gap",
      flag="--radius"),
    O("gap-input-shape", lambda f: [*G(f), "--input-shape", "2", "2"], "gap", flag="--input-shape"),
    O("gap-norm-3", lambda f: [*G(f), "--norm", "3"], "gap", flag="--norm"),
    # -- inspect
    O("inspect-output-negative", lambda f: [f.good(), "--output", "-1"], "inspect", flag="--output"),
    O("inspect-output-too-big", lambda f: [f.good(), "--output", "99"], "inspect", flag="--output"),
    O("inspect-input-shape-zero", lambda f: [*I(f), "--input-shape", "0"], "inspect", flag="--input-shape"),
    O("inspect-input-shape-product", lambda f: [*I(f), "--input-shape", "2", "2"], "inspect",
      flag="--input-shape"),
    O("inspect-memory-limit", lambda f: [*I(f), "--memory-limit", "1KB"], "inspect", flag="--memory-limit"),
    O("inspect-cliques-bogus", lambda f: [*I(f), "--cliques", "bogus"], "inspect", flag="--cliques"),
    # -- batch
    O("batch-scheduler-garbage", lambda f: [*BATCH(f), "--scheduler", "not an address"], "batch",
      flag="--scheduler"),
    O("batch-scheduler-port", lambda f: [*BATCH(f), "--scheduler", "tcp://127.0.0.1:99999"], "batch",
      flag="--scheduler"),
    O("batch-scheduler-http", lambda f: [*BATCH(f), "--scheduler", "http://127.0.0.1:8786"], "batch",
      flag="--scheduler"),
    O("batch-scheduler-escape", lambda f: [*BATCH(f), "--scheduler", "\x1b[31mhost\n:1"], "batch",
      flag="--scheduler"),
    O("batch-data-missing", lambda f: [*BATCH(f, "--data"), "--data", str(f.tmp / "none.npy")], "batch",
      flag="--data"),
    O("batch-data-text", lambda f: [*BATCH(f, "--data"), "--data", f.text("pts.npy")], "batch", flag="--data"),
    O("batch-data-wrong-suffix", lambda f: [*BATCH(f, "--data"), "--data", f.text("pts.csv", "0,0,0\n")],
      "batch", flag="--data"),
    O("batch-data-mnist-0", lambda f: [*BATCH(f, "--data"), "--data", "mnist:0"], "batch", flag="--data"),
    O("batch-data-wrong-width", lambda f: [*BATCH(f, "--data"), "--data", f.npy("w.npy", np.zeros((2, 5)))],
      "batch", flag="--data"),
    O("batch-data-strings", lambda f: [*BATCH(f, "--data"), "--data", f.npy("s.npy", np.full((2, 3), "x"))],
      "batch", flag="--data"),
    O("batch-data-pickle-payload", lambda f: [
        *BATCH(f, "--data"), "--data", f.npy("p.npy", np.array([ReduceOpen(f.marker("data"))], dtype=object))],
      "batch", flag="--data", payload="data"),
    O("batch-radius-negative", lambda f: [*BATCH(f, "--radius"), "--radius", "-1"], "batch", flag="--radius"),
    O("batch-radius-nan", lambda f: [*BATCH(f, "--radius"), "--radius", "nan"], "batch", flag="--radius"),
    O("batch-radius-missing", lambda f: BATCH(f, "--radius"), "batch", flag="--radius"),
    O("batch-workers-negative", lambda f: [*BATCH(f, "--workers"), "--workers", "-1"], "batch", flag="--workers"),
    O("batch-workers-text", lambda f: [*BATCH(f, "--workers"), "--workers", "two"], "batch", flag="--workers"),
    O("batch-chunk-size-zero", lambda f: [*BATCH(f), "--chunk-size", "0"], "batch", flag="--chunk-size"),
    O("batch-max-items-negative", lambda f: [*BATCH(f), "--max-items", "-1"], "batch", flag="--max-items"),
    O("batch-time-limit-zero", lambda f: [*BATCH(f), "--time-limit", "0"], "batch", flag="--time-limit"),
    O("batch-clip-reversed", lambda f: [*BATCH(f), "--clip", "1", "0"], "batch", flag="--clip"),
    O("batch-degree-zero", lambda f: [*BATCH(f), "--degree", "0"], "batch", flag="--degree"),
    O("batch-output-text", lambda f: [*BATCH(f)[:2], *BATCH(f)[4:], "--output", "abc"], "batch", flag="--output"),
    O("batch-threshold-nan", lambda f: [*BATCH(f), "--threshold", "nan"], "batch", flag="--threshold"),
    O("batch-out-suffix", lambda f: [*BATCH(f, "--out"), "--out", str(f.tmp / "out.txt")], "batch", flag="--out"),
    # -- experiment
    O("experiment-unknown", lambda f: ["nonsense", *E(f)], "experiment", flag="name"),
    O("experiment-jobs-zero", lambda f: ["random", *E(f), "--jobs", "0"], "experiment", flag="--jobs"),
    O("experiment-jobs-negative", lambda f: ["random", *E(f), "--jobs", "-2"], "experiment", flag="--jobs"),
    O("experiment-time-limit-negative", lambda f: ["random", *E(f), "--time-limit", "-1"], "experiment",
      flag="--time-limit"),
    O("experiment-time-limit-nan", lambda f: ["random", *E(f), "--time-limit", "nan"], "experiment",
      flag="--time-limit"),
    O("experiment-seeds-negative", lambda f: ["random", *E(f), "--seeds", "-1"], "experiment", flag="--seeds"),
    O("experiment-out-is-file", lambda f: ["random", *E(f, "--out"), "--out", f.text("exp.txt")], "experiment",
      flag="--out"),
]


# ------------------------------------------------------------------------------------------ assertions

def assert_clean_failure(code, out, err, expected_code=2, must_contain=None, argv=()):
    """The contract: exit code, one 'lipopt: ' line on stderr, no traceback/escapes, nothing on stdout."""
    shown = f"argv={argv!r} code={code} stderr={err!r} stdout={out[:200]!r}"
    assert code == expected_code, shown
    assert out == "", shown
    assert err.endswith("\n") and len(err.splitlines()) == 1, shown
    assert err.startswith("lipopt: "), shown
    assert "Traceback" not in err and "\x1b" not in err, shown
    assert all(ch.isprintable() for ch in err[:-1]), shown
    assert "---" not in err, shown  # a flag spelled twice over ("----samples")
    if must_contain is not None:
        assert must_contain in err, shown


def run_main(capsys, argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors exit through SystemExit
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case,command", _model_params())
def test_bad_model_file(case, command, tmp_path, shared, capsys):
    f = Files(tmp_path, shared)
    argv = _model_argv(case, command, f)
    marker = f.marker(case.payload) if case.payload else None
    code, out, err = run_main(capsys, argv)
    assert_clean_failure(code, out, err, must_contain=case.message, argv=argv)
    if marker is not None:
        assert not marker.exists(), f"payload ran: {marker}"


@pytest.mark.parametrize("case", OPTION_CASES, ids=[c.id for c in OPTION_CASES])
def test_bad_option(case, tmp_path, shared, capsys):
    f = Files(tmp_path, shared)
    argv = [case.command, *case.argv(f)]
    code, out, err = run_main(capsys, argv)
    assert_clean_failure(code, out, err, case.code, must_contain=case.flag, argv=argv)
    if case.flag and case.flag.startswith("--") and "-" in case.flag[2:]:
        python_name = case.flag[2:].replace("-", "_")
        assert python_name not in err, f"API spelling {python_name!r} in {err!r}"
    if case.payload:
        assert not f.marker(case.payload).exists(), "payload ran"


def test_forged_huge_header_refused_fast(tmp_path, shared, capsys):
    f = Files(tmp_path, shared)
    t0 = time.perf_counter()
    code, out, err = run_main(capsys, ["inspect", _forged((100_000, 100_000))(f)])
    assert time.perf_counter() - t0 < 2.0
    assert_clean_failure(code, out, err)


def test_corpus_size():
    assert len(MODEL_CASES) >= 50 and len(OPTION_CASES) >= 50


# ------------------------------------------------ controls: the base argv of every case is itself valid

def test_controls_succeed(tmp_path, shared, capsys):
    """Without the bad bit the same argv works, so the cases above fail for the reason they name."""
    f = Files(tmp_path, shared)
    for argv in (["bound", *B(f)], ["bound", *B(f), *_center(f, [0.5, 0.5, 0.5]), "--clip", "0", "1"],
                 ["bound", *B(f), *_box(f, [0, 0, 0], [1, 1, 1])], ["inspect", *I(f)],
                 ["inspect", *I(f), "--input-shape", "3"], ["batch", *BATCH(f)]):
        code, out, err = run_main(capsys, argv)
        assert code == 0 and out and "Traceback" not in err, (argv, err)


def test_bool_weights_are_accepted(tmp_path, shared, capsys):
    """Decision: bool is numeric 0/1 (numpy and torch treat it so), hence a valid weight dtype."""
    f = Files(tmp_path, shared)
    model = f.bad_npz(W0=np.eye(4, 3, dtype=bool))
    code, out, err = run_main(capsys, ["inspect", model, "--output", "0", "--json"])
    assert code == 0, err
    assert '"widths": [3, 4, 2]' in out


PAYLOADS = ["ts-payload", "ts-payload-nested", "pickled-module-payload", "pickled-module-payload-legacy",
            "pickled-system-payload"]


@pytest.mark.parametrize("kind", PAYLOADS)
def test_payloads_are_live(kind, tmp_path):
    """The payload files do write their marker when loaded the unsafe way, so 'no marker' above means
    'not run', not 'broken payload' (fresh copies in tmp_path: the module's markers stay untouched)."""
    import torch
    own = Shared(tmp_path)
    path = own.get(kind)
    if kind.startswith("ts-"):
        torch.jit.load(str(path))
    else:
        try:
            torch.load(str(path), weights_only=False)
        except Exception:  # the payload replaced the object by open()'s file handle, or by an int
            pass
    assert own.marker(kind).exists()


def test_npy_payload_is_live(tmp_path):
    marker = tmp_path / "MARKER"
    buf = npy_bytes(np.array([ReduceOpen(marker)], dtype=object))
    np.load(io.BytesIO(buf), allow_pickle=True)
    assert marker.exists()


# ------------------------------------------------ subprocess: nothing leaks on fd 2 (torch/C++ chatter)

SUBPROCESS_CASES = [
    ("ts-payload", lambda f: ["bound", f.get("ts-payload")], "ts-payload"),
    ("pickled-module-payload", lambda f: ["gap", f.get("pickled-module-payload"), "--time-limit", "5"],
     "pickled-module-payload"),
    ("onnx-external-parent", lambda f: ["bound", f.get("onnx-external-parent"), "--output", "0"], None),
    ("time-limit-nan", lambda f: ["bound", *B(f), "--time-limit", "nan"], None),
]


@pytest.mark.parametrize("name,argv,payload", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_subprocess_stderr_is_one_line(name, argv, payload, tmp_path, shared):
    f = Files(tmp_path, shared)
    args = [str(a) for a in argv(f)]
    p = subprocess.run([sys.executable, "-m", "lipopt.cli", *args], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "default"})
    assert_clean_failure(p.returncode, p.stdout, p.stderr, argv=args)
    if payload:
        assert not shared.marker(payload).exists()
