"""Decode throughput of the stream decoder (text and binary), measured, not asserted.

Examples
--------
>>> r = decoder_throughput(n_samples=5000)
>>> sorted(r), r["text"]["n_samples"]
(['binary', 'text'], 5000)
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)


def decoder_throughput(n_samples: int = 250_000, fs: float = 250.0, n_channels: int = 2,
                       chunk: int = 65536, seed: int = 0, repeats: int = 3) -> dict:
    """Measure how fast :class:`~edgebp.runtime.protocol.StreamDecoder` decodes.

    A stream of ``n_samples`` random 24-bit samples (one header, consecutive seq with
    wrap-around) is encoded in each format, then decoded in ``chunk``-byte pieces, as a
    serial or file source would deliver it. The best of ``repeats`` runs is kept, and the
    decoded samples are checked against the input (a fast wrong decoder is worth nothing).

    Parameters
    ----------
    n_samples : int
        Samples per run.
    fs : float
        Sampling rate written in the header; sets the real-time factor.
    n_channels : int
        Channels per sample.
    chunk : int
        Bytes per ``feed()`` call.
    seed : int
        Seed of the random values.
    repeats : int
        Runs per format; the fastest counts.

    Returns
    -------
    dict
        ``{"text": {...}, "binary": {...}}`` each with ``n_samples``, ``bytes``, ``seconds``,
        ``lines_per_s`` (samples per second), ``mb_per_s`` and ``realtime_factor``
        (samples per second / fs).
    """
    from edgebp.runtime.protocol import (
        StreamDecoder, StreamHeader, header_encode_binary, header_encode_text,
        samples_encode_binary, samples_encode_text,
    )

    rng = np.random.default_rng(seed)
    raw = rng.integers(-(2**23), 2**23, size=(n_samples, n_channels))
    seq = np.arange(n_samples) % 65536
    header = StreamHeader(fs=fs, channels=[f"ch{i}" for i in range(n_channels)], units=["mV"] * n_channels,
                          adc_bits=[24] * n_channels, gain=[1.0] * n_channels, offset=[0.0] * n_channels)
    streams = {
        "text": header_encode_text(header) + samples_encode_text(seq, raw),
        "binary": header_encode_binary(header) + samples_encode_binary(seq, raw),
    }
    out = {}
    for fmt, data in streams.items():
        pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
        best = np.inf
        for _ in range(max(1, repeats)):
            dec = StreamDecoder(fmt=fmt)
            t0 = time.perf_counter()
            blocks = [dec.feed(p) for p in pieces]
            blocks.append(dec.finish())
            best = min(best, time.perf_counter() - t0)
        values = np.concatenate([b.values for b in blocks])
        if values.shape != raw.shape or not np.array_equal(values, raw.astype(np.float64)):
            raise RuntimeError(f"decoder_throughput: {fmt} decode does not reproduce the input")
        rate = n_samples / best
        out[fmt] = {
            "n_samples": n_samples, "bytes": len(data), "seconds": best,
            "lines_per_s": rate, "mb_per_s": len(data) / best / 1e6, "realtime_factor": rate / fs,
        }
        log.info("%s decode: %.0f samples/s, %.1f MB/s, %.0fx real time at %g Hz",
                 fmt, rate, len(data) / best / 1e6, rate / fs, fs)
    return out
