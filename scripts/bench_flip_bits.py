"""Micro-benchmark of the channel hot paths.

* ``flip_bits`` throughput (MB/s, 1 MB = 1e6 bytes) on a random buffer at several
  BERs, best of several repeats; the ``ber = 0`` row is the floor set by copying the
  bytes in and out, which every call pays.
* ``ber_nakagami`` and ``expected_ber`` (32 Gauss-Hermite nodes) on 1e6 SNR values.

Usage: ``python scripts/bench_flip_bits.py [--size-mb 10] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.model.channel import ber_nakagami, expected_ber, flip_bits  # noqa: E402


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench_flip(size_mb: float, repeats: int) -> None:
    n_bytes = int(size_mb * 1e6)
    data = np.random.default_rng(0).integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    print(f"flip_bits on {n_bytes / 1e6:.0f} MB ({8 * n_bytes:.2e} bits), best of {repeats}")
    print(f"{'BER':>8} {'flips':>10} {'time ms':>9} {'MB/s':>9} {'ns/flip':>8}")
    for ber in (0.0, 1e-5, 1e-3, 1e-1):
        rng = np.random.default_rng(1)
        seconds, (_, flips) = best_of(lambda: flip_bits(data, ber, rng), repeats)
        per_flip = f"{1e9 * seconds / flips:8.1f}" if flips else f"{'-':>8}"
        print(f"{ber:8.0e} {flips:10d} {1e3 * seconds:9.2f} {n_bytes / 1e6 / seconds:9.1f} {per_flip}")


def bench_ber(n: int, repeats: int) -> None:
    snr = np.logspace(-3, 6, n)  # -30 .. 60 dB
    snr_db = np.linspace(-30.0, 60.0, n)
    print(f"\nBER functions on {n:.0e} SNR values, best of {repeats}")
    print(f"{'call':<42} {'time ms':>9} {'ns/value':>9}")
    cases = [
        ("ber_nakagami(snr, m=2)       [finite sum]", lambda: ber_nakagami(snr, 2.0)),
        ("ber_nakagami(snr, m=2.5)     [betainc]", lambda: ber_nakagami(snr, 2.5)),
        ("ber_nakagami(snr, m=0.5)     [betainc]", lambda: ber_nakagami(snr, 0.5)),
        ("expected_ber(db, m=2, 4 dB)", lambda: expected_ber(snr_db, 2.0, 4.0)),
        ("expected_ber(db, m=2.5, 4 dB)", lambda: expected_ber(snr_db, 2.5, 4.0)),
    ]
    for name, fn in cases:
        reps = repeats if "expected" not in name else max(1, repeats // 3)
        seconds, _ = best_of(fn, reps)
        print(f"{name:<42} {1e3 * seconds:9.1f} {1e9 * seconds / n:9.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=10.0, help="buffer size for flip_bits (1e6 bytes)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--n-snr", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, {platform.machine()}")
    bench_flip(args.size_mb, args.repeats)
    bench_ber(args.n_snr, args.repeats)


if __name__ == "__main__":
    main()
