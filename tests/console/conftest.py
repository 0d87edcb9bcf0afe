"""Fixtures of the console's browser tests (the helpers are in console_rig.py)."""

from console_rig import browser, instrument

__all__ = ["browser", "instrument"]
