"""What every console script shares: exit codes (SPEC §1), argument types, error output."""

from __future__ import annotations

import argparse
import sys

from shuttled import __version__

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIG = 78


def add_version(parser: argparse.ArgumentParser, prog: str) -> None:
    parser.add_argument("--version", action="version", version=f"{prog} {__version__}")


def fail(message: str, code: int = EXIT_REFUSED) -> int:
    """Print a one-line reason on stderr and return the exit code (no traceback for users)."""
    print(f"error: {message}", file=sys.stderr)
    return code


def protocol_refused(error: Exception) -> int:
    """Why a protocol or its parameters were refused (every located error of an invalid file,
    else one line), and the exit code: what `analyze` and `analyze --patients` both print."""
    from protocols import ParameterError, ProtocolInvalid

    if isinstance(error, ProtocolInvalid):
        for located in error.errors:
            print(located, file=sys.stderr)
        return EXIT_REFUSED
    return fail(error.message if isinstance(error, ParameterError) else str(error))


def parameter_assignment(text: str) -> tuple[str, float]:
    """`k=v` with a numeric value, for `--param`."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"value of {name!r} is not a number: {value!r}") from None


def text_assignment(text: str) -> tuple[str, str]:
    """`k=v` with a text value: `shuttlectl confirm --value lot=ML-123`, `simulate --confirm`."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


MAX_SPEED = float("inf")


def speed(text: str) -> float:
    """`max` (as fast as possible, MAX_SPEED) or a positive factor of real time."""
    if text == "max":
        return MAX_SPEED
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be 'max' or a number, got {text!r}") from None
    if not 0 < value < MAX_SPEED:
        raise argparse.ArgumentTypeError(f"speed must be a positive number or 'max', got {text!r}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
