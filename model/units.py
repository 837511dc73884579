"""Read quantities users type: ``24e9``, ``24GB``, ``24GiB``, ``600GB/s``, ``125TFLOPS``, ``7B``."""

from __future__ import annotations

import math
import re

_SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
_BINARY = {"ki": 2.0**10, "mi": 2.0**20, "gi": 2.0**30, "ti": 2.0**40, "pi": 2.0**50}
_COUNT = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}

_NUMBER = r"(?P<num>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"


class QuantityError(ValueError):
    """A quantity that cannot be read, or is not positive and finite."""


# No quantity a user types is longer; a longer text is refused before any parsing.
MAX_TEXT = 64


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "…")


def _number(text: str, pattern: str, what: str) -> tuple[float, re.Match]:
    if len(text) > MAX_TEXT:
        raise QuantityError(f"{_shown(text)} is too long to be {what}")
    match = re.fullmatch(_NUMBER + r"\s*" + pattern, text.strip().lower().replace("_", ""))
    if not match:
        raise QuantityError(f"cannot read {_shown(text)} as {what}")
    value = float(match.group("num"))
    return value, match


def _check(value: float, text: str, allow_zero: bool = False) -> float:
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise QuantityError(f"{_shown(text)} must be a {'non-negative' if allow_zero else 'positive'} finite number")
    return value


def parse_bytes(text: str, allow_zero: bool = False) -> float:
    """Bytes from ``24e9``, ``24GB`` (SI, ×1e9), ``24GiB`` (×2³⁰), ``512MB``, ``24G``."""
    value, m = _number(text, r"(?P<prefix>[kmgtpe]i?)?\s*(?:b|bytes?)?", "bytes (e.g. 24GB or 24e9)")
    prefix = m.group("prefix") or ""
    scale = _BINARY[prefix] if prefix.endswith("i") else _SI[prefix]
    return _check(value * scale, text, allow_zero)


def parse_bandwidth(text: str) -> float:
    """Bytes/s from ``600e9``, ``600GB/s``, ``3.35TB/s``, ``600 GBps``."""
    value, m = _number(text, r"(?P<prefix>[kmgtpe]i?)?\s*(?:b(?:/s|ps|ytes/s)?)?", "bandwidth (e.g. 600GB/s or 600e9)")
    prefix = m.group("prefix") or ""
    scale = _BINARY[prefix] if prefix.endswith("i") else _SI[prefix]
    return _check(value * scale, text)


def parse_flops(text: str) -> float:
    """FLOP/s from ``125e12``, ``125TFLOPS``, ``125 TFLOP/s``, ``989.5T``."""
    value, m = _number(text, r"(?P<prefix>[kmgtpe])?\s*(?:flops?(?:/s)?|ops(?:/s)?)?", "FLOP/s (e.g. 125TFLOPS or 125e12)")
    return _check(value * _SI[m.group("prefix") or ""], text)


def parse_count(text: str, allow_zero: bool = False) -> float:
    """A plain count from ``7e9``, ``7B``, ``6738415616``, ``1.5M``."""
    value, m = _number(text, r"(?P<prefix>[kmbgt])?", "a count (e.g. 7e9 or 7B)")
    return _check(value * _COUNT[m.group("prefix") or ""], text, allow_zero)
