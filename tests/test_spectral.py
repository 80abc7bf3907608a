"""The product bound's l2 factor is a proved upper bound on ||W||_2 (baselines.product.spectral_upper):
never below the true spectral norm (exact on diagonal / permutation matrices, LAPACK's SVD with a
margin above its ~1e-15 error elsewhere), within 1e-6 of it when the Gram matrix fits, and the cheap
rigorous bound min(||W||_F, sqrt(||W||_1 ||W||_inf)) beyond that."""
import numpy as np
import pytest
import scipy.sparse as sp

from lipopt.baselines import product
from lipopt.baselines.product import spectral_upper
from lipopt.relaxations.lipsdp import _norm2_upper


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (40, 25), (120, 300), (300, 90)])
def test_upper_and_tight(seed, shape):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 7)
    if seed % 3 == 1:
        W[rng.random(shape) < 0.8] = 0.0          # sparse
    if seed % 3 == 2 and min(shape) > 1:
        W[:, 0] = W[:, 1]                          # rank deficient
    true = np.linalg.norm(W, 2)
    u = spectral_upper(sp.csr_array(W))
    assert u >= true * (1 - 1e-13)   # LAPACK's own value carries ~1e-15 relative error
    assert u <= true * (1 + 1e-6) + 1e-300


def test_exact_norms_are_covered():
    assert spectral_upper(sp.csr_array(np.diag([3.0, 4.0, -4.0]))) >= 4.0
    P = sp.csr_array(np.eye(50)[np.random.default_rng(0).permutation(50)])
    assert spectral_upper(P) >= 1.0
    assert spectral_upper(sp.csr_array((5, 4))) == 0.0


def test_beyond_the_gram_limit_the_cheap_bound(monkeypatch):
    monkeypatch.setattr(product, "MAX_GRAM", 10)
    W = sp.csr_array(np.random.default_rng(1).standard_normal((30, 20)))
    assert spectral_upper(W) == _norm2_upper(W) >= np.linalg.norm(W.toarray(), 2)
