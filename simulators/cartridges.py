"""Which single-use cartridge is installed in each unit of the virtual instrument.

A real Cell Shuttle reads the cartridge's id (a printed and RFID-tagged serial) when it is
clamped in, and its bioreactor controller reports it per unit; the daemon checks it against the
batch at Start and on every tick (SPEC §12, chain of identity). The simulated controller serves
`CartridgeId` from the list kept here: `CRT-<unit>` unless `shuttle-sim --cartridge U01=ID` says
otherwise, changed mid-run by the `cartridge_swap` fault.
"""

from __future__ import annotations

MAX_CARTRIDGE_ID = 64


def default_cartridge(unit_id: str) -> str:
    """`CRT-U01`: what an instrument fresh from the factory simulation reports."""
    return f"CRT-{unit_id}"


def cartridge_problem(value: object) -> str | None:
    """Why `value` cannot be a cartridge id (1–64 printable characters), or None."""
    if not isinstance(value, str):
        return f"a cartridge id is text, not {value!r}"
    if not 1 <= len(value) <= MAX_CARTRIDGE_ID:
        return f"a cartridge id has 1 to {MAX_CARTRIDGE_ID} characters, not {len(value)}"
    if not value.isprintable() or value != value.strip():
        return f"a cartridge id is printable text without leading or trailing blanks: {value!r}"
    return None


def parse_assignments(items: list[str], unit_ids: list[str]) -> dict[str, str]:
    """`["U01=CRT-0042", ...]` (from `--cartridge`) as {unit: id}; ValueError says what is
    wrong with the first bad item, naming it."""
    assigned: dict[str, str] = {}
    for item in items:
        unit, sep, cartridge = item.partition("=")
        if not sep:
            raise ValueError(f"--cartridge {item!r}: expected UNIT=ID, e.g. U01=CRT-0042")
        if unit not in unit_ids:
            raise ValueError(f"--cartridge {item!r}: unknown unit {unit!r}; this instrument has: "
                             + ", ".join(unit_ids))
        problem = cartridge_problem(cartridge)
        if problem is not None:
            raise ValueError(f"--cartridge {item!r}: {problem}")
        assigned[unit] = cartridge
    return assigned


def installed(unit_ids: list[str], assigned: dict[str, str] | None = None) -> list[str]:
    """Every unit's cartridge id, in unit order."""
    chosen = assigned or {}
    return [chosen.get(unit, default_cartridge(unit)) for unit in unit_ids]
