"""The zoo's network architectures (issue 15): small MLPs, CNNs and residual nets as torch modules.

Every builder returns a fresh, randomly initialised module (call torch.manual_seed first for a fixed
initialisation). ``SPECS`` lists, per manifest name, the builder, the data set, the input shape (without
the batch dim), a short human description, the family, and the activations of the activated layers in
forward order (one entry per activation module; their count is the manifest's ``hidden_layers``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn


def mlp(widths: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear(w0, w1) - act - ... - Linear(w_{L-1}, w_L): a chain, exportable to lipopt's npz format."""
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def lenet5() -> nn.Sequential:
    """LeNet-5 style: 1x28x28 -> conv5 pad 2 (4) -> pool -> 4x14x14 -> conv5 (8) -> 8x10x10 -> pool -> 200."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(200, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def cnn_avgpool() -> nn.Sequential:
    """4x28x28 -> avg 4x14x14 -> 8x14x14 -> avg 8x7x7 = 392 -> 10."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=1, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(392, 10))


def cnn_stride2() -> nn.Sequential:
    """Stride-2 convs instead of pooling: 4x14x14 -> 8x7x7 = 392 -> 64 -> 10."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(392, 64), nn.ReLU(), nn.Linear(64, 10))


def cnn_bn() -> nn.Sequential:
    """Conv-BN-ReLU twice (BatchNorm in eval mode is affine): 4x28x28 -> 8x14x14 = 1568 -> 10."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
        nn.Linear(1568, 10))


class ConvBlock(nn.Module):
    """x -> relu(x + conv2(relu(conv1(x)))), 3x3 convs with padding 1 (shape preserving)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x):
        return self.relu2(x + self.conv2(self.relu1(self.conv1(x))))


class ResNetCNN(nn.Module):
    """Stem conv stride 2 (1x28x28 -> 8x14x14), ReLU, two residual blocks, AvgPool 2 (8x7x7), Linear(10)."""

    def __init__(self, channels: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.block1 = ConvBlock(channels)
        self.block2 = ConvBlock(channels)
        self.pool = nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels * 49, 10)

    def forward(self, x):
        h = self.relu(self.stem(x))
        h = self.block2(self.block1(h))
        return self.fc(self.flatten(self.pool(h)))


class DenseBlock(nn.Module):
    """h -> h + W2 relu(W1 h + b1) + b2 (no activation after the add)."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, h):
        return h + self.fc2(self.relu(self.fc1(h)))


class ResMLP(nn.Module):
    """784-64 stem + ReLU, two blocks h + W2 relu(W1 h), ReLU, Linear(64, 10)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.stem = nn.Linear(784, width)
        self.relu0 = nn.ReLU()
        self.block1 = DenseBlock(width)
        self.block2 = DenseBlock(width)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc(self.relu(self.block2(self.block1(self.relu0(self.stem(x))))))


@dataclass(frozen=True)
class Spec:
    build: Callable[[], nn.Module]
    dataset: str              # "mnist" | "digits"
    input_shape: tuple        # without the batch dim
    architecture: str
    family: str               # "mlp" | "cnn" | "residual"
    activations: tuple        # one per activation module, forward order
    chain: bool               # an MLP chain Linear-act-...-Linear (also shipped as npz)
    epochs: int = 5
    prune: tuple = ()         # iterative per-layer magnitude pruning schedule (sparsities)
    retrain_epochs: int = 0   # epochs after each pruning step
    batch_size: int | None = None  # overrides of the script's defaults (digits: 1,437 training images only)
    lr: float | None = None


def _mlp_spec(widths, act="relu", dataset="mnist", epochs=5, **kw) -> Spec:
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    hidden = widths[1:-1]
    text = "-".join(map(str, widths)) + " " + {"relu": "ReLU", "tanh": "tanh", "sigmoid": "sigmoid"}[act]
    return Spec(lambda: mlp(widths, acts[act]), dataset, (widths[0],), text, "mlp", (act,) * len(hidden),
                True, epochs, **kw)


SPECS: dict[str, Spec] = {
    "mlp64": _mlp_spec([784, 64, 10]),
    "mlp256x2": _mlp_spec([784, 256, 256, 10]),
    "mlp128x4": _mlp_spec([784, 128, 128, 128, 128, 10]),
    "mlp1024x2": _mlp_spec([784, 1024, 1024, 10], epochs=3),
    "mlp64x7": _mlp_spec([784] + [64] * 7 + [10], batch_size=32),
    "digits32x6": _mlp_spec([64] + [32] * 6 + [10], dataset="digits", epochs=20, batch_size=16, lr=3e-3),
    "tanh_mlp": _mlp_spec([784, 64, 64, 10], act="tanh"),
    "sigmoid_mlp": _mlp_spec([784, 64, 64, 10], act="sigmoid", batch_size=32, lr=3e-3),
    "pruned90": _mlp_spec([784, 128, 128, 128, 128, 10], epochs=4, prune=(0.5, 0.8, 0.9), retrain_epochs=2),
    "lenet5": Spec(lenet5, "mnist", (1, 28, 28),
                   "LeNet-5: conv5x5p2(4)-ReLU-maxpool2-conv5x5(8)-ReLU-maxpool2-200-120-84-10 ReLU",
                   "cnn", ("relu",) * 4, False),
    "cnn_avgpool": Spec(cnn_avgpool, "mnist", (1, 28, 28),
                        "conv3x3p1(4)-ReLU-avgpool2-conv3x3p1(8)-ReLU-avgpool2-392-10", "cnn", ("relu",) * 2, False),
    "cnn_stride2": Spec(cnn_stride2, "mnist", (1, 28, 28),
                        "conv3x3s2p1(4)-ReLU-conv3x3s2p1(8)-ReLU-392-64-10 ReLU", "cnn", ("relu",) * 3, False),
    "cnn_bn": Spec(cnn_bn, "mnist", (1, 28, 28),
                   "conv3x3p1(4)-BN-ReLU-conv3x3s2p1(8)-BN-ReLU-1568-10", "cnn", ("relu",) * 2, False),
    "resnet_cnn": Spec(ResNetCNN, "mnist", (1, 28, 28),
                       "stem conv3x3s2(8)-ReLU, 2 residual blocks relu(x + conv(relu(conv x))), avgpool2, 392-10",
                       "residual", ("relu",) * 5, False),
    "resmlp": Spec(ResMLP, "mnist", (784,),
                   "784-64 ReLU stem, 2 blocks h + W2 relu(W1 h) (64-64-64), ReLU, 64-10",
                   "residual", ("relu",) * 4, False),
}
