"""The validated, immutable form of a protocol file.

Objects here are only built by the loader after every check passed, so the engine can trust
them without re-validating; they are frozen so a loaded template cannot drift between runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from protocols.expression_ast import Expression

__all__ = [
    "ON_TIMEOUT_CHOICES",
    "Confirm",
    "DensityControl",
    "Parameter",
    "ParameterError",
    "Phase",
    "Protocol",
    "Step",
    "Transfer",
]

OnTimeout = Literal["hold", "abort", "continue"]
ON_TIMEOUT_CHOICES: tuple[str, ...] = ("hold", "abort", "continue")


class ParameterError(ValueError):
    """An operator-supplied parameter was refused; the message is shown to the operator as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Parameter:
    name: str
    default: float
    min: float
    max: float
    unit: str = ""

    def check(self, value: float) -> None:
        """Refuse a value the protocol author did not qualify (bounds are part of validation)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"parameter '{self.name}' must be a number, not {value!r}")
        if not math.isfinite(value):
            raise ParameterError(f"parameter '{self.name}' must be a finite number, not {value}")
        if not self.min <= value <= self.max:
            unit = f" {self.unit}" if self.unit else ""
            raise ParameterError(
                f"parameter '{self.name}' = {value:g}{unit} is outside its allowed range "
                f"[{self.min:g}, {self.max:g}]{unit}"
            )


@dataclass(frozen=True)
class Transfer:
    """Move liquid with one pump; `volume_ml` None means everything in the vessel (harvest)."""

    pump: str
    volume_ml: float | None
    rate_ml_min: float

    @property
    def is_all(self) -> bool:
        return self.volume_ml is None


@dataclass(frozen=True)
class Confirm:
    """An operator step (SPEC §12): the run waits until a person confirms `prompt`, giving a value
    for each name in `record` (a lot number, a bag id), and, with `verify`, until a second,
    different person verifies it. Manual work is part of the batch, so it is signed and recorded
    like everything the instrument does by itself."""

    prompt: str
    record: tuple[str, ...] = ()
    verify: bool = False


Step = Transfer | Confirm


@dataclass(frozen=True)
class DensityControl:
    """Dilute with fresh medium to stay under `max_density` (a number or a parameter name)."""

    pump: str
    max_density: float | str
    max_volume_ml: float


@dataclass(frozen=True)
class Phase:
    name: str
    temperature: float
    duration_s: float | None = None
    until: Expression | None = None
    until_text: str | None = None
    timeout_s: float | None = None
    on_timeout: str = "hold"
    steps: tuple[Step, ...] = ()
    density_control: DensityControl | None = None

    @property
    def transfers(self) -> tuple[Transfer, ...]:
        """The steps that move liquid (what needs pumps); operator steps move none."""
        return tuple(step for step in self.steps if isinstance(step, Transfer))

    @property
    def operator_steps(self) -> tuple[tuple[int, Confirm], ...]:
        """(index in `steps`, step) of every step that waits for people."""
        return tuple((i, step) for i, step in enumerate(self.steps) if isinstance(step, Confirm))

    @property
    def ends_by_steps(self) -> bool:
        """A phase with neither duration nor until ends when its steps are done (SPEC §3)."""
        return self.duration_s is None and self.until is None


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    parameters: dict[str, Parameter]
    phases: tuple[Phase, ...]
    text: str = field(repr=False)
    sha256: str
    identity: str

    def phase(self, name: str) -> Phase:
        """The phase called `name`; KeyError if there is none (names are unique)."""
        for phase in self.phases:
            if phase.name == name:
                return phase
        raise KeyError(name)

    def resolve_parameters(self, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
        """Defaults plus operator overrides, each checked against its declared bounds."""
        values = {name: parameter.default for name, parameter in self.parameters.items()}
        for name, value in (overrides or {}).items():
            parameter = self.parameters.get(name)
            if parameter is None:
                declared = ", ".join(sorted(self.parameters)) or "none"
                raise ParameterError(
                    f"unknown parameter '{name}' for protocol {self.identity} "
                    f"(declared: {declared})"
                )
            parameter.check(value)
            values[name] = float(value)
        return values

    def phase_max_density(self, phase: Phase, params: Mapping[str, float]) -> float | None:
        """The density limit of a phase with resolved parameters; None without density control."""
        control = phase.density_control
        if control is None:
            return None
        if isinstance(control.max_density, str):
            return float(params[control.max_density])
        return float(control.max_density)
