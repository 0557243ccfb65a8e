"""BER of the channel code against theory and against a Monte Carlo of real BPSK symbols.

For each (m, mean SNR, shadowing sigma): ``sim.model.channel.expected_ber`` (eq. 9 averaged
over shadowing, eq. 10), an independent closed form where one exists (Rayleigh m = 1,
Proakis' finite sum for integer m, no shadowing), and a Monte Carlo that sends random
bits as BPSK symbols through simulated shadowing + Nakagami-m fading + Gaussian noise
and counts hard-decision errors (with its 95% binomial interval).

Usage: ``python scripts/ber_vs_theory.py [--bits 2000000] [--seed 0]``
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.model.channel import db_to_linear, expected_ber  # noqa: E402


def proakis(snr: float, m: int) -> float:
    """Closed form for integer m without shadowing (Proakis, Digital Communications)."""
    mu = math.sqrt(snr / (m + snr))
    return ((1 - mu) / 2) ** m * sum(math.comb(m - 1 + k, k) * ((1 + mu) / 2) ** k for k in range(m))


def monte_carlo(snr_db: float, m: float, sigma_db: float, n_bits: int, rng: np.random.Generator) -> tuple[float, float]:
    """Error rate of hard-decision BPSK over shadowing + Nakagami-m fading; returns (rate, 95% half-width)."""
    errors, done, chunk = 0, 0, 1_000_000
    while done < n_bits:
        n = min(chunk, n_bits - done)
        shadow = 10 ** (sigma_db * rng.standard_normal(n) / 10)
        gain = rng.gamma(m, 1.0 / m, n)
        snr = db_to_linear(snr_db) * shadow * gain
        bits = rng.integers(0, 2, n)
        received = (2 * bits - 1) * np.sqrt(2 * snr) + rng.standard_normal(n)
        errors += int(np.sum((received > 0) != (bits == 1)))
        done += n
    p = errors / n_bits
    return p, 1.96 * math.sqrt(max(p * (1 - p), 1e-300) / n_bits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{'m':>4} {'SNR dB':>7} {'sigma dB':>8} {'expected_ber':>13} {'closed form':>12} {'Monte Carlo BPSK':>24} {'MC/theory':>9}")
    for m in (0.5, 1.0, 2.0, 3.0):
        for snr_db in (0.0, 10.0, 20.0):
            for sigma_db in (0.0, 4.0):
                theory = float(expected_ber(snr_db, m, sigma_db))
                closed = proakis(db_to_linear(snr_db), int(m)) if sigma_db == 0 and m == int(m) else math.nan
                mc, half = monte_carlo(snr_db, m, sigma_db, args.bits, rng)
                print(
                    f"{m:>4} {snr_db:>7.1f} {sigma_db:>8.1f} {theory:>13.4e} {closed:>12.4e} "
                    f"{mc:>12.4e} +- {half:>8.1e} {mc / theory:>9.3f}"
                )


if __name__ == "__main__":
    main()
