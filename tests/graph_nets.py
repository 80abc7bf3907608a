"""Small seeded random graph networks (residual, max pooling, concat) for the graph tests."""
from __future__ import annotations

import numpy as np

from lipopt.model.conv import Activation as ActLayer
from lipopt.model.graph import GraphBuilder


def _dense(b: GraphBuilder, src: int, n_out: int, rng, shape=None, label="dense") -> int:
    n_in = b.nodes[src].size
    W = rng.normal(size=(n_out, n_in)) * rng.choice([0.5, 1.0, 2.0])
    W[rng.random(W.shape) < 0.2] = 0.0
    return b.affine(src, W, rng.normal(size=n_out) * 0.5, shape or (n_out,), label)


def random_residual(seed: int, act: str = "relu"):
    """x -> relu(A x) -> blocks y + B2 relu(B1 y) (some with a projection on the skip, some with a relu
    after the add) -> output affine."""
    rng = np.random.default_rng(seed)
    n0, h = int(rng.integers(2, 4)), int(rng.integers(2, 4))
    b = GraphBuilder((n0,))
    y = b.layer(_dense(b, 0, h, rng), ActLayer("act", act))
    for k in range(int(rng.integers(1, 3))):
        width = int(rng.integers(1, 3))
        branch = b.layer(_dense(b, y, width, rng), ActLayer("act", act))
        branch = _dense(b, branch, h, rng)
        skip = _dense(b, y, h, rng, label="projection") if rng.random() < 0.3 else y
        y = b.add([skip, branch])
        if rng.random() < 0.5:
            y = b.layer(y, ActLayer("act", act))
    return b.finish(_dense(b, y, int(rng.integers(1, 3)), rng))


def random_pool(seed: int, act: str = "relu"):
    """1-D signal: affine to (C, L) -> relu -> max pooling (overlapping windows, padding) -> maybe a
    residual add with a pooled second branch or a concat -> output affine."""
    rng = np.random.default_rng(seed)
    n0, C = int(rng.integers(2, 4)), int(rng.integers(1, 3))
    L = int(rng.integers(3, 5)) if C == 1 else 3
    b = GraphBuilder((n0,))
    z = b.layer(_dense(b, 0, C * L, rng, shape=(C, L)), ActLayer("act", act))
    k = int(rng.integers(2, 4))
    stride = int(rng.integers(1, 3))
    pad = int(rng.integers(0, 2)) if k >= 2 else 0
    pooled = b.maxpool(z, k, stride, pad, 1, bool(rng.random() < 0.3))
    shape = b.shape(pooled)
    kind = rng.integers(0, 3)
    if kind == 1:  # residual add of a second (linear) branch on the pooled shape
        other = _dense(b, 0, b.nodes[pooled].size, rng, shape=shape)
        pooled = b.add([pooled, other])
    elif kind == 2:  # concat with a second activated branch
        other = b.layer(_dense(b, 0, b.nodes[pooled].size, rng, shape=shape), ActLayer("act", act))
        pooled = b.concat([pooled, other], 1)
    return b.finish(_dense(b, pooled, int(rng.integers(1, 3)), rng))


def random_two_pools(seed: int, act: str = "relu"):
    """LeNet in miniature: affine to (C, L) -> act -> max pool -> affine to (C2, L2) -> act -> max pool
    (windows of 2 or 3, some odd: a tournament's unpaired candidate) -> output affine."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder((int(rng.integers(2, 4)),))
    z = b.layer(_dense(b, 0, 4, rng, shape=(1, 4)), ActLayer("act", act))
    z = b.maxpool(z, int(rng.integers(2, 4)), 1)
    L2 = int(rng.integers(2, 4))
    z = b.layer(_dense(b, z, L2, rng, shape=(1, L2)), ActLayer("act", act))
    z = b.maxpool(z, 2, 1, int(rng.integers(0, 2)))
    return b.finish(_dense(b, z, int(rng.integers(1, 3)), rng))


def random_graph(seed: int, act: str = "relu"):
    return random_residual(seed, act) if seed % 2 == 0 else random_pool(seed, act)


def vertex_count(g, slopes) -> int:
    """Vertices the brute-force FGL enumerates (free neurons x free pool window choices)."""
    n = 2 ** int(sum(np.count_nonzero(lo < hi) for lo, hi in zip(slopes.lo, slopes.hi)))
    for i in g.pool_nodes:
        for w in np.flatnonzero(slopes.fixed[i] < 0):
            n *= int(np.count_nonzero(slopes.taps(g, i)[w] >= 0))
    return n


def random_dag(seed: int, act: str = "relu"):
    """Affine / act / add / concat graphs without pooling that exercise every case of the chain lift:
    residual blocks with and without an activation after the add, an affine reading an add or another
    affine (materialised as identity neurons), adds of terms sharing a source (x + W x, x + x), concats of
    branches, and an activation reading the input directly."""
    rng = np.random.default_rng(seed)
    n0 = int(rng.integers(2, 4))
    b = GraphBuilder((n0,))
    y = b.layer(0, ActLayer("act", act)) if rng.random() < 0.2 else 0
    y = b.layer(_dense(b, y, int(rng.integers(2, 4)), rng), ActLayer("act", act))
    for _ in range(int(rng.integers(1, 4))):
        h = b.nodes[y].size
        kind = int(rng.integers(0, 5))
        if kind == 0:      # residual block, maybe activated after the add
            br = _dense(b, b.layer(_dense(b, y, int(rng.integers(1, 3)), rng), ActLayer("act", act)), h, rng)
            y = b.add([y, br])
        elif kind == 1:    # x + W x: the two terms share the source x
            y = b.add([y, _dense(b, y, h, rng)])
        elif kind == 2:    # x + x
            y = b.add([y, y])
        elif kind == 3:    # concat of an activated branch and a linear one, then an affine reading it
            a = b.layer(_dense(b, y, int(rng.integers(1, 3)), rng), ActLayer("act", act))
            y = _dense(b, b.concat([a, _dense(b, y, int(rng.integers(1, 3)), rng)]), int(rng.integers(2, 4)), rng)
        else:              # two affine maps in a row
            y = _dense(b, _dense(b, y, int(rng.integers(1, 3)), rng), int(rng.integers(2, 4)), rng)
        if rng.random() < 0.5:
            y = b.layer(y, ActLayer("act", act))
    return b.finish(_dense(b, y, int(rng.integers(1, 3)), rng))
