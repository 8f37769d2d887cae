"""Argparse types for counts, limits, rates and ports: a value below its minimum (or above its maximum)
is refused by the parser, naming the option and the range (exit 2), never taken as it is
(``review list --limit -1`` dropping rows, ``sim --send -3`` sending nothing and exiting 0)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number of at least ``minimum`` (and at most ``maximum``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            within = f"{minimum}..{maximum}" if maximum is not None else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a whole number, {within}")
        return value
    parse.__name__ = "whole number"
    return parse


def number(minimum: float, maximum: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number of at least ``minimum`` (``above``: more than it), at most ``maximum``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low = value <= minimum if above else value < minimum
        if not math.isfinite(value) or low or (maximum is not None and value > maximum):
            lower = f"more than {minimum:g}" if above else f"{minimum:g} or more"
            within = f"{lower}, at most {maximum:g}" if maximum is not None else lower
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a number, {within}")
        return value
    parse.__name__ = "number"
    return parse


def transaction_id(text: str) -> str:
    """A transaction id as the ledger keys it: 1 to 64 characters, not blank (an empty ``ID`` would be
    looked up as it is and reported as unknown, with a blank where the id goes)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("the transaction id is empty")
    if len(text) > 64:
        raise argparse.ArgumentTypeError(f"a transaction id is at most 64 characters; this one has {len(text)}")
    return text


transaction_id.__name__ = "transaction id"
