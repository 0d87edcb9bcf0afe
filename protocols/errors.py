"""Located validation errors, shared by the loader, `shuttlectl validate` and LoadProtocol."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProtocolError", "ProtocolInvalid"]


@dataclass(frozen=True, order=True)
class ProtocolError:
    """One problem at a 1-based line and column, so editors and CI can jump straight to it."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.message}"

    @property
    def located(self) -> str:
        """`LINE:COL: message` without the file name, as LoadProtocol returns it (SPEC §5)."""
        return f"{self.line}:{self.col}: {self.message}"


class ProtocolInvalid(Exception):
    """Every problem found in one pass, so an author fixes a file in one round trip."""

    def __init__(self, errors: list[ProtocolError]) -> None:
        super().__init__("\n".join(str(error) for error in errors))
        self.errors = list(errors)

    def __str__(self) -> str:
        return "\n".join(str(error) for error in self.errors)
