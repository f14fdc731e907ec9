"""Sizes written for people: one way, for the headless core and the views alike."""

from __future__ import annotations


def size(n_bytes: float) -> str:
    """``950`` -> ``'950 B'``, ``3.04e6`` -> ``'3.0 MB'``, ``2.5e8`` -> ``'250 MB'``,
    ``1.3107e9`` -> ``'1.31 GB'``, ``2.4e10`` -> ``'24 GB'`` (powers of 1000)."""
    value = float(n_bytes)
    for unit in ("B", "kB", "MB"):
        if value < 999.5:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 99.95 else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:,.3g} GB"
