"""Real models through the whole pipeline: torch modules, ONNX files, the CLI's inspect."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.baselines.sampling import sampled_lower_bound
from lipopt.model import output_vector

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def small_cnn(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).double().eval()


@pytest.mark.parametrize("seed", range(3))
def test_cnn_lp_bound_above_sampled_gradients(seed):
    net = lipopt.load(small_cnn(seed), input_shape=(1, 8, 8))
    assert net.widths == (64, 32, 3)
    r = lipopt.upper_bound(net, degree=3, margin=(0, 1))
    c = output_vector(net, margin=(0, 1))
    lb = sampled_lower_bound(net, c, samples=4000, seed=seed).value
    assert r.upper_bound >= max(lb, r.lower_bound)
    # the conv layer's locality gives cliques far smaller than the 64 inputs + 32 neurons
    assert r.sizes["max_clique"] < 40


def test_pruned_mlp_keeps_sparsity():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.ReLU(), torch.nn.Linear(20, 1)).double()
    with torch.no_grad():
        w = model[0].weight
        w[w.abs() < w.abs().flatten().kthvalue(int(0.9 * w.numel())).values] = 0.0
    net = lipopt.load(model)
    assert net.weights[0].nnz <= 0.1 * 600 + 1
    r = lipopt.upper_bound(net, degree=3)
    assert r.upper_bound >= r.lower_bound


def test_onnx_through_cli(tmp_path):
    pytest.importorskip("onnx")
    model = small_cnn(0).float()
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(path), dynamo=False)
    p = subprocess.run([sys.executable, "-m", "lipopt.cli", "bound", str(path), "--output", "0", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    direct = lipopt.upper_bound(lipopt.load(path), output=0)
    assert d["upper_bound"] == direct.upper_bound


def test_inspect_cli():
    p = subprocess.run([sys.executable, "-m", "lipopt.cli", "inspect", "examples/banded_40_40_1.npz", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["widths"] == [40, 40, 1] and d["paths"] == 340 and d["clique_size"]["max"] == 10
    # the estimate is an upper bound on the real LP
    real = lipopt.upper_bound("examples/banded_40_40_1.npz", degree=3, lower=False).sizes["columns"]
    assert real <= d["lp_columns_estimate"]["3"]
