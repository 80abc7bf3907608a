"""lipopt.rounding: each helper rounds in its stated direction (checked in exact rational arithmetic),
and it reproduces, bit for bit, the copies it replaced (frozen below as they were before the move)."""
import math
from fractions import Fraction

import numpy as np
import pytest

from lipopt import rounding as R

U_EXACT = Fraction(1, 2**53)
BIGM_WIDEN = 1e-9  # exact/mip.py's value when its _up/_down were replaced


# ---------------------------------------------------------------------------------------------------
# the replaced implementations, verbatim (references for the bit-for-bit checks)

def old_sdp_gamma(k):  # certify_sdp.gamma
    ku = float(k) * 2.0**-53
    if ku >= 0.01:
        raise AssertionError("rounding bound undefined: too many terms")
    return float(np.nextafter(ku / (1.0 - ku) * (1.0 + 1e-12), np.inf))


def old_sdp_up(x):  # certify_sdp.up
    return float(np.nextafter(x, np.inf))


def old_sdp_down(x):  # certify_sdp.down
    return float(np.nextafter(x, -np.inf))


def old_sdp_sum_up(values):  # certify_sdp.sum_up
    return old_sdp_up(math.fsum(values))


def old_sdp_sum_down(values):  # certify_sdp.sum_down
    return old_sdp_down(math.fsum(values))


def old_sdp_norm2_bound(E):  # certify_sdp.norm2_bound
    if E.size == 0:
        return 0.0
    s = np.asarray(E.sum(axis=1)).ravel()
    return old_sdp_up(float(s.max()) * (1.0 + 2.0 * old_sdp_gamma(E.shape[1] + 1)))


_OLD_EPS = np.finfo(np.float64).eps


def old_domain_gamma(n):  # domain._gamma
    return max(1e-12, 4.0 * (n + 2) * _OLD_EPS)


def old_domain_down(x, margin):  # domain._down
    return np.nextafter(x - margin - 1e-300, -np.inf)


def old_domain_up(x, margin):  # domain._up
    return np.nextafter(x + margin + 1e-300, np.inf)


def old_mip_down(v):  # exact/mip._down
    v = np.asarray(v, dtype=np.float64)
    return np.nextafter(v - BIGM_WIDEN * np.abs(v) - 1e-300, -np.inf)


def old_mip_up(v):  # exact/mip._up
    v = np.asarray(v, dtype=np.float64)
    return np.nextafter(v + BIGM_WIDEN * np.abs(v) + 1e-300, np.inf)


def old_krivine_gamma(K):  # certify.py (and methods.exact_certified, baselines/product with K = len(c) + 2)
    return K * 2.0**-53 / (1 - K * 2.0**-53)


def old_round_up(x):  # methods._round_up
    return math.nextafter(x * (1 + 4 * 2.0**-53) if x > 0 else x * (1 - 4 * 2.0**-53), math.inf)


def old_product_final(value, depth):  # baselines/product.py, last line
    return math.nextafter(value * (1 + 4 * (depth + 1) * 2.0**-53), math.inf)


# ---------------------------------------------------------------------------------------------------
# inputs

def floats(n, seed, finite=True):
    """Random binary64 values over the whole exponent range (random bit patterns) plus special cases."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2**64, size=n, dtype=np.uint64).view(np.float64)
    special = np.array([0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 2.2250738585072014e-308, R.MAX_FLOAT,
                        -R.MAX_FLOAT, 1e-300, 0.1, 1e300, np.inf, -np.inf, np.nan])
    x = np.concatenate([special, x])
    return x[np.isfinite(x)] if finite else x


def moderate(n, seed):
    """Finite values of moderate size (sums / products of them cannot overflow)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n) * np.exp2(rng.integers(-200, 200, n))


def same_bits(a, b) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b))
                and np.array_equal(a[~nan].view(np.uint64), b[~nan].view(np.uint64)))


# ---------------------------------------------------------------------------------------------------
# bit for bit against the replaced copies

def test_scalar_steps_match_old_copies():
    xs = floats(3000, 1, finite=False)
    with np.errstate(all="ignore"):  # nextafter of inf / nan warns
        assert same_bits([R.up(x) for x in xs], [old_sdp_up(x) for x in xs])
        assert same_bits([R.down(x) for x in xs], [old_sdp_down(x) for x in xs])
        # scaling.scale_up / scale_down used math.nextafter
        assert same_bits([R.up(float(x)) for x in xs], [math.nextafter(float(x), math.inf) for x in xs])
        assert same_bits([R.down(float(x)) for x in xs], [math.nextafter(float(x), -math.inf) for x in xs])
        assert all(type(R.up(x)) is float and type(R.down(x)) is float for x in xs[:50])
        assert same_bits(R.next_up(xs), np.nextafter(xs, np.inf))
        assert same_bits(R.next_down(xs), np.nextafter(xs, -np.inf))


def test_sums_and_norm_bound_match_old_copies():
    rng = np.random.default_rng(2)
    for trial in range(200):
        v = moderate(int(rng.integers(0, 40)), trial).tolist()
        assert same_bits(R.sum_up(v), old_sdp_sum_up(v))
        assert same_bits(R.sum_down(v), old_sdp_sum_down(v))
    for trial in range(50):
        n = int(rng.integers(0, 12))
        E = np.abs(rng.standard_normal((n, n))) * np.exp2(rng.integers(-100, 100))
        E = E + E.T
        assert same_bits(R.norm2_bound(E), old_sdp_norm2_bound(E))


def test_gammas_match_old_copies():
    ks = list(range(0, 3000)) + [int(k) for k in np.unique(np.geomspace(1, 9e13, 400).astype(np.int64))]
    for k in ks:
        assert same_bits(R.gamma(k), old_sdp_gamma(k))
        assert same_bits(R.gamma(float(k)), old_sdp_gamma(float(k)))
        assert same_bits(R.gamma_float(k), old_krivine_gamma(k))
        assert same_bits(R.gamma_float(float(k)), old_krivine_gamma(float(k)))
        assert same_bits(R.gamma_loose(k), old_domain_gamma(k))
    with pytest.raises(AssertionError):
        R.gamma(0.01 / 2.0**-53)


def test_widening_matches_old_copies():
    rng = np.random.default_rng(3)
    x = floats(4000, 3, finite=False)
    m = np.abs(floats(x.size, 4, finite=False))[:x.size]
    with np.errstate(all="ignore"):
        assert same_bits(R.widen_up(x, m), old_domain_up(x, m))
        assert same_bits(R.widen_down(x, m), old_domain_down(x, m))
        lo, hi = R.widen(x, m)
        assert same_bits(lo, old_domain_down(x, m)) and same_bits(hi, old_domain_up(x, m))
        # mip's relative big-M widening, arrays and scalars
        assert same_bits(R.widen_up(x, BIGM_WIDEN * np.abs(x)), old_mip_up(x))
        assert same_bits(R.widen_down(x, BIGM_WIDEN * np.abs(x)), old_mip_down(x))
        for v in rng.choice(x, 50):
            assert same_bits(R.widen_up(v, BIGM_WIDEN * np.abs(v)), old_mip_up(v))


def test_relative_up_matches_old_copies():
    xs = floats(3000, 5, finite=False)
    with np.errstate(all="ignore"):
        assert same_bits([R.relative_up(float(x), 4) for x in xs], [old_round_up(float(x)) for x in xs])
        for depth in (0, 1, 2, 7):
            pos = np.abs(xs)
            assert same_bits([R.relative_up(float(v), 4 * (depth + 1)) for v in pos],
                             [old_product_final(float(v), depth) for v in pos])


# ---------------------------------------------------------------------------------------------------
# directions, in exact arithmetic

def test_up_down_are_the_neighbouring_floats():
    for x in floats(400, 6):
        if abs(x) == R.MAX_FLOAT:
            continue
        u, d = R.up(x), R.down(x)
        assert Fraction(u) > Fraction(x) > Fraction(d)
        # nothing in between: stepping back lands on x (zeros compare equal)
        assert R.down(u) == x and R.up(d) == x
    with np.errstate(over="ignore"):
        assert R.up(R.MAX_FLOAT) == math.inf and R.down(-R.MAX_FLOAT) == -math.inf


def test_sum_up_and_down_enclose_the_exact_sum():
    rng = np.random.default_rng(7)
    for trial in range(150):
        v = moderate(int(rng.integers(1, 30)), 100 + trial)
        if trial % 3 == 0:  # heavy cancellation
            v = np.concatenate([v, -v[:-1] * (1 + 2.0**-50)])
        exact = sum(Fraction(a) for a in v.tolist())
        hi, lo = R.sum_up(v.tolist()), R.sum_down(v.tolist())
        assert Fraction(lo) <= exact <= Fraction(hi)
        # and tight: within one ulp of the correctly rounded sum on each side
        s = math.fsum(v.tolist())
        assert Fraction(hi) - Fraction(lo) <= 2 * Fraction(math.ulp(s))


def test_row_sums_up_bound_every_exact_sum_and_stay_close():
    """Vectorised sums (one array or several parts) are >= the exact rational sums, even with heavy
    cancellation, and within 3 gamma_n sum|x| plus an ulp of them (the float sum's own error, then the
    added bound)."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n, rows = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        X = rng.standard_normal((rows, n)) * np.exp(rng.uniform(-30, 30, (rows, n)))
        if trial % 3 == 0:  # cancellation: each row followed by its near-negation
            X = np.concatenate([X, -X * (1 + 2.0**-50)], axis=1)
        split = int(rng.integers(0, X.shape[1] + 1))
        for got in (R.row_sums_up(X), R.row_sums_up([X[:, :split], X[:, split:]]),
                    R.row_sums_up([X.T[:split], X.T[split:]], axis=0)):
            for i in range(X.shape[0]):
                exact = sum(Fraction(a) for a in X[i].tolist())
                assert exact <= Fraction(float(got[i]))
                slack = 3.05 * R.gamma(X.shape[1] + 1) * float(np.abs(X[i]).sum()) + 1e-290
                assert Fraction(float(got[i])) - exact <= Fraction(slack) + Fraction(math.ulp(float(got[i])))


def test_gamma_bounds_highams_constant_and_is_monotone():
    ks = [1, 2, 3, 10, 100, 12345, 10**6, 10**9, 10**12, 10**13]
    prev = 0.0
    for k in ks:
        exact = k * U_EXACT / (1 - k * U_EXACT)
        g = R.gamma(k)
        assert Fraction(g) >= exact
        assert g > prev
        prev = g
        # gamma_float carries a relative error of a few u only: twice it still exceeds the exact value
        assert 2 * Fraction(R.gamma_float(k)) >= exact
        assert abs(Fraction(R.gamma_float(k)) - exact) <= 4 * U_EXACT * exact
        # the pre-activation widening is at least four times gamma_{n+2}
        n = k
        e2 = (n + 2) * U_EXACT / (1 - (n + 2) * U_EXACT)
        assert Fraction(R.gamma_loose(n)) >= 4 * e2
    assert R.gamma(0) == R.up(0.0)  # gamma_0 = 0, one ulp up
    with pytest.raises(AssertionError):
        R.gamma(2**47)


def test_widen_covers_the_margin_exactly():
    rng = np.random.default_rng(8)
    x = moderate(300, 9)
    m = np.abs(moderate(300, 10)) * (rng.random(300) < 0.8)
    hi, lo = R.widen_up(x, m), R.widen_down(x, m)
    pair = R.widen(x, m)
    assert np.array_equal(pair[0], lo) and np.array_equal(pair[1], hi)
    for a, b, h, l in zip(x.tolist(), m.tolist(), hi.tolist(), lo.tolist()):
        assert Fraction(h) >= Fraction(a) + Fraction(b) + Fraction(R.TINY)
        assert Fraction(l) <= Fraction(a) - Fraction(b) - Fraction(R.TINY)


def test_relative_up_covers_k_roundings():
    for k in (2, 4, 8, 12, 40):   # even k: 1 + k u is exactly representable
        for x in moderate(200, k).tolist():
            r = Fraction(R.relative_up(x, k))
            factor = 1 + k * U_EXACT if x > 0 else 1 - k * U_EXACT
            assert r >= Fraction(x) * factor
            assert r > Fraction(x)


def test_norm2_bound_exceeds_row_sums_and_spectral_norm():
    rng = np.random.default_rng(11)
    for trial in range(40):
        n = int(rng.integers(1, 15))
        E = np.abs(rng.standard_normal((n, n))) * np.exp2(rng.integers(-60, 60))
        E = E + E.T
        b = R.norm2_bound(E)
        exact_rows = max(sum(Fraction(v) for v in row) for row in E.tolist())
        assert Fraction(b) >= exact_rows
        assert b >= np.linalg.norm(E, 2)
    assert R.norm2_bound(np.zeros((0, 0))) == 0.0


def test_constants():
    assert R.U == Fraction(1, 2**53) and R.EPS == np.finfo(np.float64).eps == 2 * R.U
    assert R.DENORM == 5e-324 and R.DENORM / 2 == 0.0
    assert R.MAX_FLOAT == np.finfo(np.float64).max


def test_old_homes_use_the_one_implementation():
    """The helpers' former homes now hold the shared objects, not copies."""
    from lipopt import certify_sdp, domain, scaling
    from lipopt.baselines import product, witness
    from lipopt.certify import krivine
    from lipopt.exact import fgl_common, mip

    assert certify_sdp.gamma is R.gamma and certify_sdp.up is R.up and certify_sdp.down is R.down
    assert certify_sdp.sum_up is R.sum_up and certify_sdp.sum_down is R.sum_down
    assert certify_sdp.norm2_bound is R.norm2_bound and certify_sdp.U == R.U
    assert domain._gamma is R.gamma_loose and domain._up is R.widen_up and domain._down is R.widen_down
    assert witness._EPS == R.EPS and witness._DENORM == R.DENORM and fgl_common._EPS == R.EPS
    assert scaling.up is R.up and scaling.down is R.down and scaling.MAX_FLOAT == R.MAX_FLOAT
    assert mip.widen_up is R.widen_up and mip.widen_down is R.widen_down and mip.EPS == R.EPS
    assert product.gamma_float is R.gamma_float and product.relative_up is R.relative_up
    assert krivine.gamma_float is R.gamma_float and krivine.sum_up is R.sum_up and krivine.UNIT_ROUNDOFF == R.U
