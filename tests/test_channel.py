"""Tests of sim.model.channel against independent computations.

References used: textbook closed forms (Rayleigh, Proakis' integer-m sum), numerical
integration (scipy.integrate.quad, and 40-digit mpmath on Craig's formula where
mpmath is installed), Monte Carlo over simulated fading and an end-to-end
simulation of BPSK symbols with hard decisions.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from sim.model import channel as chm
from sim.model.channel import (
    Channel,
    ChannelParams,
    ber_awgn,
    ber_nakagami,
    db_to_linear,
    expected_ber,
    flip_bits,
    linear_to_db,
    mean_snr_db,
    nakagami_power_gain,
    path_loss_gain,
    received_snr,
    shadowing_gain_db,
    shannon_rate_bps,
    transmission_time_s,
)

SNR_GRID = np.logspace(-3, 6, 37)  # -30 dB .. +60 dB


# ---------------------------------------------------------------------------
# independent references


def rayleigh_ref(s):
    s = np.asarray(s, dtype=float)
    return 0.5 * (1.0 - np.sqrt(s / (1.0 + s)))


def proakis_ref(s: float, m: int) -> float:
    """Proakis (14.4-15): integer-m Nakagami BPSK, written naively."""
    mu = math.sqrt(s / (m + s))
    total = sum(math.comb(m - 1 + k, k) * ((1 + mu) / 2) ** k for k in range(m))
    return ((1 - mu) / 2) ** m * total


def quad_ref(s: float, m: float) -> float:
    """E[Q(sqrt(2 s g))] with g ~ Gamma(m, scale 1/m), by scipy quad.

    Substituting m g = u**2 gives ``int_0^inf u**(2m-1) e^{-u^2} erfc(sqrt(s/m) u) / Gamma(m) du``
    (using Q(sqrt(2) x) = erfc(x)/2); the algebraic factor u**(2m-1), singular at 0 for
    m < 1/2 + ..., is handed to QUADPACK's QAWS (``weight='alg'``).
    """
    a = math.sqrt(s / m)
    upper = math.sqrt(60.0 / (1.0 + s / m))  # beyond: e^{-60}-small relative to the total

    def f(u):
        return math.exp(-u * u) * special.erfc(a * u) / special.gamma(m)

    head, _ = integrate.quad(f, 0.0, upper, weight="alg", wvar=(2 * m - 1, 0.0), epsabs=0, epsrel=1e-13, limit=200)
    tail, _ = integrate.quad(lambda u: u ** (2 * m - 1) * f(u), upper, np.inf, epsabs=0, epsrel=1e-10)
    return head + tail


def craig_mp_ref(s: float, m: float, mp) -> float:
    """Craig's formula P = 1/pi int_0^{pi/2} (1 + s/(m sin^2 t))^-m dt, 40 digits."""
    s_, m_ = mp.mpf(s), mp.mpf(m)
    val = mp.quad(lambda t: (1 + s_ / (m_ * mp.sin(t) ** 2)) ** (-m_), [0, mp.pi / 4, mp.pi / 2]) / mp.pi
    return float(val)


def shadowed_quad_ref(mu_db: float, m: float, sigma_db: float) -> float:
    def f(z):
        return float(ber_nakagami(10 ** ((mu_db + sigma_db * z) / 10), m)) * stats.norm.pdf(z)

    val, _ = integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-12, limit=500)
    return val


def within_binomial(k: float, n: int, p: float, z: float = 5.0) -> bool:
    return abs(k - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1.0


# ---------------------------------------------------------------------------
# dB, path loss, shadowing, fading


def test_db_round_trip_and_values():
    x = np.array([-30.0, 0.0, 3.0, 47.5])
    np.testing.assert_allclose(linear_to_db(db_to_linear(x)), x, rtol=0, atol=1e-12)
    assert db_to_linear(10.0) == pytest.approx(10.0)
    assert linear_to_db(0.0) == -np.inf
    assert db_to_linear(-np.inf) == 0.0
    with pytest.raises(ValueError):
        linear_to_db(-1.0)


def test_path_loss_gain():
    d = np.array([1.0, 10.0, 250.0])
    np.testing.assert_allclose(path_loss_gain(d, 3.5), d**-3.5, rtol=1e-15)
    assert path_loss_gain(100.0, 2.0) == pytest.approx(1e-4)
    for bad in (0.0, -5.0, np.nan, np.inf):
        with pytest.raises(ValueError):
            path_loss_gain(bad, 3.0)
    with pytest.raises(ValueError):
        path_loss_gain(10.0, -1.0)


def test_shadowing_draws_are_normal_in_db():
    x = shadowing_gain_db(6.0, 200_000, np.random.default_rng(1))
    assert x.shape == (200_000,)
    assert abs(x.mean()) < 5 * 6.0 / math.sqrt(x.size)
    assert x.std() == pytest.approx(6.0, rel=0.01)
    assert stats.kstest(x / 6.0, "norm").pvalue > 1e-4
    np.testing.assert_array_equal(shadowing_gain_db(0.0, 5, np.random.default_rng(0)), np.zeros(5))
    with pytest.raises(ValueError):
        shadowing_gain_db(-1.0, 3, np.random.default_rng(0))


@pytest.mark.parametrize("m,omega", [(0.5, 1.0), (2.0, 1.0), (3.7, 2.5)])
def test_nakagami_gains_are_gamma(m, omega):
    g = nakagami_power_gain(m, 200_000, np.random.default_rng(2), omega)
    assert g.mean() == pytest.approx(omega, rel=0.01)
    assert g.var() == pytest.approx(omega**2 / m, rel=0.03)
    # amplitude sqrt(g) is Nakagami-m with spread omega
    assert stats.kstest(np.sqrt(g), stats.nakagami(m, scale=math.sqrt(omega)).cdf).pvalue > 1e-4
    for bad_m in (0.4, np.nan):
        with pytest.raises(ValueError):
            nakagami_power_gain(bad_m, 3, np.random.default_rng(0))
    with pytest.raises(ValueError):
        nakagami_power_gain(2.0, 3, np.random.default_rng(0), omega=0.0)


def test_received_snr_and_mean_snr_by_hand():
    p, d, eps, n0 = 0.2, 150.0, 3.2, 2e-10
    expected = p * d**-eps / n0
    assert received_snr(p, d, eps, n0) == pytest.approx(expected, rel=1e-14)
    assert received_snr(p, d, eps, n0, shadowing_db=-3.0, fading_gain=0.7) == pytest.approx(
        expected * 10**-0.3 * 0.7, rel=1e-14
    )
    assert mean_snr_db(p, d, eps, n0, omega=2.0) == pytest.approx(10 * math.log10(2 * expected), abs=1e-12)
    assert mean_snr_db(0.0, d, eps, n0) == -np.inf
    with pytest.raises(ValueError):
        received_snr(-1.0, d, eps, n0)
    with pytest.raises(ValueError):
        received_snr(p, d, eps, 0.0)


# ---------------------------------------------------------------------------
# ber_nakagami: closed forms and numerical integration


def test_ber_awgn():
    s = np.array([0.0, 0.5, 1.0, 4.0, 10.0, np.inf])
    q = stats.norm.sf(np.sqrt(2 * s))
    np.testing.assert_allclose(ber_awgn(s), q, rtol=1e-12, atol=0)
    with pytest.raises(ValueError):
        ber_awgn(-1.0)


def test_rayleigh_closed_form():
    np.testing.assert_allclose(ber_nakagami(SNR_GRID, 1.0), rayleigh_ref(SNR_GRID), rtol=1e-9)


@pytest.mark.parametrize("m", [2, 3, 5, 8, 16, 20])
def test_integer_m_closed_form(m):
    ref = np.array([proakis_ref(s, m) for s in SNR_GRID])
    np.testing.assert_allclose(ber_nakagami(SNR_GRID, float(m)), ref, rtol=1e-8)
    # the general incomplete-beta path gives the same numbers for integer m
    np.testing.assert_allclose(chm._ber_betainc(SNR_GRID, float(m)), ref, rtol=1e-8)


@pytest.mark.parametrize("m", [0.5, 0.75, 1.5, 2.5, 3.7])
def test_real_m_against_quad(m):
    snrs = np.logspace(-3, 6, 10)
    ref = np.array([quad_ref(s, m) for s in snrs])
    np.testing.assert_allclose(ber_nakagami(snrs, m), ref, rtol=1e-8)


def test_half_m_closed_form():
    """m = 1/2: the beta form reduces to (1/2)(1 - (2/pi) arctan(sqrt(2 s)))."""
    ref = 0.5 - np.arctan(np.sqrt(2 * SNR_GRID)) / np.pi
    np.testing.assert_allclose(ber_nakagami(SNR_GRID, 0.5), ref, rtol=1e-8)


def test_high_precision_against_craig_mpmath():
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    snrs = [1e-3, 1e-1, 1.0, 10.0, 1e3, 1e6, 1e7]
    for m in (0.6, 1.0, 2.0, 2.5, 4.3, 12.0, 40.0):
        for s in snrs:
            ref = craig_mp_ref(s, m, mp)
            assert float(ber_nakagami(s, m)) == pytest.approx(ref, rel=1e-10), (s, m)


def test_large_m_tends_to_awgn():
    s = np.array([0.1, 1.0, 3.0, 6.0])
    awgn = ber_awgn(s)
    prev = ber_nakagami(s, 1.0)
    for m in (2.0, 5.0, 20.0, 200.0, 2000.0):
        cur = ber_nakagami(s, m)
        assert np.all(cur <= prev * (1 + 1e-12)) and np.all(cur >= awgn)  # fading always hurts
        prev = cur
    np.testing.assert_allclose(ber_nakagami(s[:3], 200.0), awgn[:3], rtol=0.05)  # down to BER 7e-3
    np.testing.assert_allclose(ber_nakagami(s, 20000.0), awgn, rtol=2e-3)
    np.testing.assert_array_equal(ber_nakagami(s, np.inf), awgn)


def test_limits_and_special_values():
    ms = np.array([0.5, 1.0, 2.0, 2.5, 16.0, 17.0, 300.0, np.inf])
    np.testing.assert_array_equal(ber_nakagami(0.0, ms), np.full(ms.shape, 0.5))
    np.testing.assert_array_equal(ber_nakagami(np.inf, ms), np.zeros(ms.shape))
    assert np.isnan(ber_nakagami(np.nan, 2.0)) and np.isnan(ber_nakagami(np.nan, 2.5))
    # tiny SNR: 0.5 - BER ~ sqrt(s) ... monotone and continuous across the s/m = 1e-4 switch
    s = np.logspace(-9, -2, 200)
    for m in (0.5, 2.0, 3.3):
        b = ber_nakagami(s, m)
        assert np.all(np.diff(b) < 0)
        assert np.all(b < 0.5)
    # no underflow artefacts at huge SNR: BER ~ C s^-m
    b = ber_nakagami(np.array([1e100, 1e101]), 3.0)
    assert b[0] / b[1] == pytest.approx(1e3, rel=1e-9)


def test_paths_agree_near_integers():
    """Integer m uses a finite sum, other m the incomplete beta: they must meet."""
    for m in (1.0, 2.0, 5.0, 16.0):
        a = ber_nakagami(SNR_GRID, m)
        b = ber_nakagami(SNR_GRID, m * (1 + 1e-13))
        np.testing.assert_allclose(a, b, rtol=1e-9)


def test_ber_nakagami_validation():
    with pytest.raises(ValueError):
        ber_nakagami(1.0, 0.49)
    with pytest.raises(ValueError):
        ber_nakagami(1.0, [1.0, 0.3])
    with pytest.raises(ValueError):
        ber_nakagami(1.0, np.nan)
    with pytest.raises(ValueError):
        ber_nakagami(-0.1, 2.0)


def test_ber_nakagami_broadcasting_and_array_m():
    s = np.logspace(-1, 3, 5)[:, None]
    m = np.array([0.5, 1.0, 2.0, 2.5, 7.0, 40.0, np.inf])
    out = ber_nakagami(s, m)
    assert out.shape == (5, 7)
    for j, mv in enumerate(m):
        np.testing.assert_array_equal(out[:, j], ber_nakagami(s[:, 0], mv))
    assert np.ndim(ber_nakagami(1.0, 2.0)) == 0
    assert isinstance(ber_nakagami(1.0, 2.0), float)
    assert ber_nakagami([[1.0]], 2.0).shape == (1, 1)


# ---------------------------------------------------------------------------
# Monte Carlo checks


@pytest.mark.parametrize("m,snr", [(0.5, 3.0), (1.0, 10.0), (2.0, 10.0), (3.7, 5.0)])
def test_monte_carlo_over_fading(m, snr):
    rng = np.random.default_rng(11)
    n = 400_000
    g = rng.gamma(m, 1.0 / m, n)
    samples = 0.5 * special.erfc(np.sqrt(snr * g))
    tol = 5 * samples.std() / math.sqrt(n)
    assert abs(samples.mean() - ber_nakagami(snr, m)) < tol


@pytest.mark.parametrize("m,snr", [(0.5, 3.0), (1.0, 10.0), (2.0, 10.0), (3.7, 5.0)])
def test_end_to_end_bpsk_symbols(m, snr):
    """Random bits, BPSK +-1, Nakagami gain per symbol, AWGN, hard decision."""
    rng = np.random.default_rng(12)
    n = 1_000_000
    bits = rng.integers(0, 2, n)
    x = 1.0 - 2.0 * bits  # Eb = 1
    g = rng.gamma(m, 1.0 / m, n)
    noise = rng.normal(0.0, math.sqrt(1.0 / (2.0 * snr)), n)  # N0 / 2 per dimension, N0 = 1 / snr
    y = np.sqrt(g) * x + noise
    errors = int(np.count_nonzero((y < 0) != (bits == 1)))
    assert within_binomial(errors, n, float(ber_nakagami(snr, m)))


@pytest.mark.parametrize("m,mu_db,sigma_db", [(1.0, 12.0, 4.0), (2.0, 10.0, 6.0), (2.5, 6.0, 8.0)])
def test_expected_ber_monte_carlo(m, mu_db, sigma_db):
    rng = np.random.default_rng(13)
    n = 400_000
    z = rng.standard_normal(n)
    g = rng.gamma(m, 1.0 / m, n)
    inst = 10 ** ((mu_db + sigma_db * z) / 10) * g
    samples = 0.5 * special.erfc(np.sqrt(inst))
    target = float(expected_ber(mu_db, m, sigma_db))
    assert abs(samples.mean() - target) < 5 * samples.std() / math.sqrt(n)
    # and end to end with symbols
    bits = rng.integers(0, 2, n)
    y = np.sqrt(inst) * (1.0 - 2.0 * bits) + rng.normal(0.0, math.sqrt(0.5), n)
    errors = int(np.count_nonzero((y < 0) != (bits == 1)))
    assert within_binomial(errors, n, target)


# ---------------------------------------------------------------------------
# expected_ber (shadowing average)


def test_expected_ber_sigma_zero_is_exact():
    mu = np.linspace(-20, 60, 33)
    for m in (0.5, 2.0, 2.5):
        np.testing.assert_array_equal(expected_ber(mu, m, 0.0), ber_nakagami(db_to_linear(mu), m))
    # mixed sigma array: zero entries exact, others shadowed
    sig = np.array([0.0, 4.0, 0.0, 8.0])
    out = expected_ber(15.0, 2.0, sig)
    assert out[0] == out[2] == ber_nakagami(db_to_linear(15.0), 2.0)
    assert out[1] > out[0] and out[3] > out[1]


@pytest.mark.parametrize("m,sigma_db", [(0.5, 8.0), (1.0, 8.0), (2.0, 4.0), (2.0, 8.0), (3.0, 6.0), (4.5, 4.0)])
def test_expected_ber_against_quad(m, sigma_db):
    for mu in (-10.0, 0.0, 10.0, 20.0, 30.0, 40.0):
        ref = shadowed_quad_ref(mu, m, sigma_db)
        assert float(expected_ber(mu, m, sigma_db)) == pytest.approx(ref, rel=1e-5), mu


def test_expected_ber_more_nodes_for_hard_cases():
    ref = shadowed_quad_ref(50.0, 5.0, 10.0)
    assert float(expected_ber(50.0, 5.0, 10.0, n_nodes=64)) == pytest.approx(ref, rel=1e-6)


def test_expected_ber_broadcasting():
    mu = np.array([0.0, 10.0, 20.0])[:, None]
    m = np.array([1.0, 2.0, 2.5, 4.0])
    out = expected_ber(mu, m, 6.0)
    assert out.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert out[i, j] == pytest.approx(float(expected_ber(mu[i, 0], m[j], 6.0)), rel=1e-14)
    sig = np.array([[[0.0]], [[3.0]]])
    assert expected_ber(mu, m, sig).shape == (2, 3, 4)
    assert np.ndim(expected_ber(10.0, 2.0, 4.0)) == 0
    # monotone: more SNR, less BER; at high SNR, where BER is convex in dB, shadowing hurts
    mus = np.linspace(-10, 60, 50)
    e = expected_ber(mus, 2.0, 6.0)
    assert np.all(np.diff(e) < 0)
    high = mus >= 10
    assert np.all(e[high] > ber_nakagami(db_to_linear(mus[high]), 2.0))
    assert expected_ber(-np.inf, 2.0, 4.0) == pytest.approx(0.5, rel=1e-14)
    assert expected_ber(np.inf, 2.0, 4.0) == 0.0


def test_expected_ber_validation():
    with pytest.raises(ValueError):
        expected_ber(10.0, 2.0, -1.0)
    with pytest.raises(ValueError):
        expected_ber(10.0, 0.2, 4.0)
    with pytest.raises(ValueError):
        expected_ber(10.0, 2.0, 4.0, n_nodes=0)


# ---------------------------------------------------------------------------
# flip_bits


def hamming(a: bytes, b: bytes) -> int:
    x = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))
    return int(np.unpackbits(x).sum())


def test_flip_rate_over_many_bits():
    rng = np.random.default_rng(21)
    data = rng.integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()  # 8 Mbit
    out, n = flip_bits(data, 1e-3, rng)
    assert isinstance(out, bytes) and len(out) == len(data)
    assert within_binomial(n, 8 * len(data), 1e-3)
    assert hamming(data, out) == n  # distinct positions, count reported right


@pytest.mark.parametrize("ber", [1e-5, 0.05, 0.3, 0.5, 0.7, 0.999])
def test_flip_counts_and_hamming(ber):
    rng = np.random.default_rng(22)
    data = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    out, n = flip_bits(data, ber, rng)
    assert hamming(data, out) == n
    assert within_binomial(n, 8 * len(data), ber)


def test_flip_positions_uniform_over_bits_and_bytes():
    rng = np.random.default_rng(23)
    data = bytes(4096)
    per_bit = np.zeros(8 * len(data))
    trials = 200
    for _ in range(trials):
        out, _ = flip_bits(data, 0.01, rng)
        per_bit += np.unpackbits(np.frombuffer(out, np.uint8))
    # each bit position within a byte, and first / last bytes, get their share
    by_bit = per_bit.reshape(-1, 8).sum(axis=0)
    assert by_bit.sum() == pytest.approx(trials * 8 * len(data) * 0.01, rel=0.02)
    assert stats.chisquare(by_bit).pvalue > 1e-4  # uniform over the 8 bit positions
    halves = per_bit.reshape(2, -1).sum(axis=1)
    assert within_binomial(halves[0], int(halves.sum()), 0.5)
    assert per_bit[:8].sum() > 0 and per_bit[-8:].sum() > 0


def test_flip_small_buffers_every_bit_reachable():
    rng = np.random.default_rng(24)
    counts = np.zeros(8)
    for _ in range(4000):
        out, n = flip_bits(b"\x00", 0.5, rng)
        assert n == bin(out[0]).count("1")
        counts += np.unpackbits(np.frombuffer(out, np.uint8))
    for c in counts:
        assert within_binomial(c, 4000, 0.5)


def test_flip_edge_cases():
    rng = np.random.default_rng(25)
    data = bytes(range(256)) * 4
    assert flip_bits(data, 0.0, rng) == (data, 0)
    out, n = flip_bits(data, 1.0, rng)
    assert n == 8 * len(data)
    assert out == bytes(255 - b for b in data)
    for ber in (0.0, 0.3, 1.0):
        assert flip_bits(b"", ber, rng) == (b"", 0)
    assert flip_bits(data, 1e-300, rng) == (data, 0)  # huge geometric gaps do not overflow
    assert flip_bits(data, 5e-324, rng) == (data, 0)
    for bad in (-0.01, 1.01, np.nan, np.inf):
        with pytest.raises(ValueError):
            flip_bits(data, bad, rng)


def test_flip_inputs_not_modified_and_types():
    src = bytearray(b"hello world" * 100)
    before = bytes(src)
    out, n = flip_bits(src, 0.2, np.random.default_rng(26))
    assert bytes(src) == before and isinstance(out, bytes) and n > 0
    out2, n2 = flip_bits(memoryview(before), 0.2, np.random.default_rng(26))
    assert (out2, n2) == (out, n)
    out3, n3 = flip_bits(before, np.float64(0.2), np.random.default_rng(26))
    assert (out3, n3) == (out, n)


def test_flip_deterministic_with_seed():
    data = bytes(100_000)
    a = flip_bits(data, 1e-3, np.random.default_rng(7))
    b = flip_bits(data, 1e-3, np.random.default_rng(7))
    c = flip_bits(data, 1e-3, np.random.default_rng(8))
    assert a == b
    assert a != c


def test_flip_count_distribution_is_binomial():
    """Across many small calls the count has binomial mean and variance."""
    rng = np.random.default_rng(27)
    n_bits, p = 8 * 64, 0.02
    counts = np.array([flip_bits(bytes(64), p, rng)[1] for _ in range(5000)])
    assert abs(counts.mean() - n_bits * p) < 5 * math.sqrt(n_bits * p * (1 - p) / counts.size)
    assert counts.var() == pytest.approx(n_bits * p * (1 - p), rel=0.1)


# ---------------------------------------------------------------------------
# rate and transmission time


def test_transmission_time_by_hand():
    # 1 Mbit over 1 MHz at SNR 3: log2(4) = 2 bit/s/Hz -> 2 Mbit/s -> 0.5 s
    assert transmission_time_s(1e6, 1e6, 3.0) == pytest.approx(0.5, rel=1e-15)
    assert shannon_rate_bps(1e6, 3.0) == pytest.approx(2e6, rel=1e-15)
    assert shannon_rate_bps(20e6, 1e-12) == pytest.approx(20e6 * 1e-12 / math.log(2), rel=1e-9)
    n = np.array([8e6, 1.6e7])
    snr = np.array([[1.0], [15.0]])
    t = transmission_time_s(n, 10e6, snr)
    np.testing.assert_allclose(t, [[0.8, 1.6], [0.2, 0.4]], rtol=1e-14)


def test_transmission_time_ideal_and_edges():
    assert transmission_time_s(8e6, None, 10.0) == 0.0
    assert transmission_time_s(8e6, 0.0, 10.0) == 0.0
    np.testing.assert_array_equal(transmission_time_s([1.0, 2.0], None, 5.0), [0.0, 0.0])
    assert shannon_rate_bps(None, 3.0) == np.inf
    assert transmission_time_s(0, 1e6, 0.0) == 0.0
    assert transmission_time_s(10, 1e6, 0.0) == np.inf
    assert transmission_time_s(10, 1e6, np.inf) == 0.0
    for args in ((-1, 1e6, 1.0), (1, -1e6, 1.0), (1, 1e6, -1.0)):
        with pytest.raises(ValueError):
            transmission_time_s(*args)


# ---------------------------------------------------------------------------
# ChannelParams and Channel


def test_channel_params_defaults_and_validation():
    p = ChannelParams()
    assert (p.path_loss_exponent, p.shadowing_sigma_db, p.nakagami_m) == (3.0, 4.0, 2.0)
    assert (p.nakagami_omega, p.noise_power_w, p.bandwidth_hz) == (1.0, 1e-9, 10e6)
    assert ChannelParams(bandwidth_hz=None).bandwidth_hz is None
    assert isinstance(ChannelParams(nakagami_m=3).nakagami_m, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.nakagami_m = 3.0  # type: ignore[misc]
    bad = [
        dict(noise_power_w=-1e-9),
        dict(noise_power_w=0.0),
        dict(nakagami_m=0.3),
        dict(nakagami_m=np.nan),
        dict(nakagami_omega=0.0),
        dict(shadowing_sigma_db=-1.0),
        dict(path_loss_exponent=0.0),
        dict(path_loss_exponent=np.inf),
        dict(bandwidth_hz=-1.0),
    ]
    for kw in bad:
        with pytest.raises(ValueError):
            ChannelParams(**kw)
    with pytest.raises(TypeError):
        ChannelParams(nakagami_m="2")  # type: ignore[arg-type]


def test_channel_methods_match_module_functions():
    params = ChannelParams(path_loss_exponent=3.5, shadowing_sigma_db=6.0, nakagami_m=2.5,
                           nakagami_omega=1.3, noise_power_w=3e-10, bandwidth_hz=5e6)
    ch = Channel(params)
    power = 0.25
    dist = np.array([30.0, 80.0, 200.0])
    hand_mean = power * dist**-3.5 * 1.3 / 3e-10
    np.testing.assert_allclose(ch.mean_snr_db(power, dist), 10 * np.log10(hand_mean), rtol=1e-13)
    np.testing.assert_array_equal(ch.expected_ber(power, dist), expected_ber(ch.mean_snr_db(power, dist), 2.5, 6.0))

    shadow = np.array([-4.0, 0.0, 3.0])
    gain = np.array([0.2, 1.0, 2.0])
    np.testing.assert_allclose(ch.snr(power, dist, shadow, gain),
                               power * dist**-3.5 * 10 ** (shadow / 10) * gain / 3e-10, rtol=1e-13)
    np.testing.assert_allclose(ch.ber_given_shadowing(power, dist, shadow),
                               ber_nakagami(hand_mean * 10 ** (shadow / 10), 2.5), rtol=1e-12)
    np.testing.assert_allclose(ch.transmission_time_s(1e6, hand_mean),
                               1e6 / (5e6 * np.log2(1 + hand_mean)), rtol=1e-13)
    assert Channel(ChannelParams(bandwidth_hz=None)).transmission_time_s(1e6, 10.0) == 0.0

    np.testing.assert_array_equal(ch.draw_shadowing_db(10, np.random.default_rng(3)),
                                  shadowing_gain_db(6.0, 10, np.random.default_rng(3)))
    np.testing.assert_array_equal(ch.draw_fading_gain(10, np.random.default_rng(4)),
                                  nakagami_power_gain(2.5, 10, np.random.default_rng(4), 1.3))
    assert Channel().params == ChannelParams()


def test_ber_given_shadowing_averages_to_expected_ber():
    """What the world draws (one shadowing per image) averages to what the agent expects."""
    ch = Channel(ChannelParams(shadowing_sigma_db=5.0, nakagami_m=2.0))
    power, dist = 0.1, 150.0
    shadow = ch.draw_shadowing_db(200_000, np.random.default_rng(5))
    samples = ch.ber_given_shadowing(power, dist, shadow)
    target = float(ch.expected_ber(power, dist))
    assert abs(samples.mean() - target) < 5 * samples.std() / math.sqrt(samples.size)
