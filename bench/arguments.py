"""argparse types for counts, shared by bench/ and tools/: a bad value is an error at parse time,
before minutes of set-up. Only argparse here, so that a tool importing it loads nothing else."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """Counts of frames, rounds, streams, viewers or steps: 1 or more."""
    return whole_number(text, 1)


def whole_number(text: str, least: int) -> int:
    """A whole number of at least ``least``, or an argparse error saying which of the two it is not."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: must be {least} or more")
    return value
