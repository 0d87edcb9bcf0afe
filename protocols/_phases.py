"""Reading the `phases` list: phase keys, steps, density control and `until` conditions."""

from __future__ import annotations

import difflib
import re

from ruamel.yaml.comments import CommentedMap

from protocols._schema import Checker, Loc, describe, item_at, key_at, start_of, value_at
from protocols.expressions import (
    Expression,
    ExpressionSyntaxError,
    check_expression,
    parse_expression,
)
from protocols.model import ON_TIMEOUT_CHOICES, DensityControl, Phase, Step, Transfer
from protocols.operator_steps import read_confirm

__all__ = ["PhaseReader"]

PHASE_KEYS = (
    "name",
    "temperature",
    "duration",
    "until",
    "timeout",
    "on_timeout",
    "steps",
    "density_control",
)
PHASE_REQUIRED = ("name", "temperature")
STEP_KINDS = ("transfer", "confirm")
TRANSFER_KEYS = ("pump", "volume_ml", "volume", "rate_ml_min")
TRANSFER_REQUIRED = ("pump", "rate_ml_min")
DENSITY_KEYS = ("pump", "max_density", "max_volume_ml")
TEMPERATURE_MIN, TEMPERATURE_MAX = 4.0, 42.0
PHASE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")


class PhaseReader:
    """Validates phases against the declared parameter names; errors go to the checker."""

    def __init__(self, checker: Checker, parameter_names: set[str]) -> None:
        self.checker = checker
        self.parameter_names = parameter_names
        self.seen: dict[str, int] = {}

    def read_all(self, doc: CommentedMap, key: str) -> list[Phase]:
        seq = self.checker.sequence(doc[key], value_at(doc, key), key)
        if seq is None:
            return []
        if len(seq) == 0:
            self.checker.error(
                value_at(doc, key), "phases must not be empty: a protocol needs at least one phase"
            )
            return []
        phases = []
        for index, item in enumerate(seq):
            phase = self.read_phase(item, item_at(seq, index), index)
            if phase is not None:
                phases.append(phase)
        return phases

    # ------------------------------------------------------------------------------ phase

    def read_phase(self, item: object, loc: Loc, index: int) -> Phase | None:
        checker = self.checker
        before = len(checker.errors)
        phase = checker.mapping(item, loc, f"phase {index + 1}")
        if phase is None:
            return None
        name = self._phase_name(phase)
        context = f" in phase '{name}'" if name else f" in phase {index + 1}"
        checker.check_keys(phase, PHASE_KEYS, PHASE_REQUIRED, context)
        temperature = None
        if "temperature" in phase:
            temperature = checker.number(phase, "temperature")
            if temperature is not None and not TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX:
                checker.error(
                    value_at(phase, "temperature"),
                    f"temperature {temperature:g} °C is outside the allowed range "
                    f"{TEMPERATURE_MIN} to {TEMPERATURE_MAX} °C",
                )
        duration = checker.duration(phase, "duration") if "duration" in phase else None
        timeout = checker.duration(phase, "timeout") if "timeout" in phase else None
        until, until_text = self._until(phase)
        on_timeout = self._on_timeout(phase)
        steps = self._steps(phase) if "steps" in phase else ()
        density = None
        if "density_control" in phase:
            density = self._density_control(
                phase["density_control"], value_at(phase, "density_control")
            )
        has_steps = isinstance(phase.get("steps"), list) and len(phase["steps"]) > 0
        if "duration" not in phase and "until" not in phase and not has_steps:
            label = repr(name) if name else str(index + 1)
            checker.error(
                start_of(phase, loc),
                f"phase {label} could never end: give it a "
                "duration, an until condition (with a timeout) or steps",
            )
        if len(checker.errors) > before or name is None or temperature is None:
            return None
        return Phase(
            name=name,
            temperature=temperature,
            duration_s=duration,
            until=until,
            until_text=until_text,
            timeout_s=timeout,
            on_timeout=on_timeout,
            steps=steps,
            density_control=density,
        )

    def _phase_name(self, phase: CommentedMap) -> str | None:
        if "name" not in phase or (name := self.checker.text(phase, "name")) is None:
            return None
        loc = value_at(phase, "name")
        if not PHASE_NAME_PATTERN.fullmatch(name):
            self.checker.error(
                loc,
                f"invalid phase name {name!r}: use lower-case letters, digits and '-', "
                "starting with a letter or digit ([a-z0-9][a-z0-9-]*)",
            )
        if name in self.seen:
            self.checker.error(
                loc, f"duplicate phase name {name!r} (already used at line {self.seen[name]})"
            )
        else:
            self.seen[name] = loc[0]
        return name

    def _until(self, phase: CommentedMap) -> tuple[Expression | None, str | None]:
        checker = self.checker
        for key in ("timeout", "on_timeout"):
            if key in phase and "until" not in phase:
                checker.error(
                    key_at(phase, key),
                    f"{key} without until: a timeout only applies to an until condition",
                )
        if "until" not in phase:
            return None, None
        if "timeout" not in phase:
            checker.error(
                key_at(phase, "until"),
                "until needs a timeout (and on_timeout) for when the condition never holds",
            )
        value = phase["until"]
        if not isinstance(value, str):
            checker.error(
                value_at(phase, "until"),
                f"until must be a condition such as 'density >= 2e6', not {describe(value)}",
            )
            return None, None
        text = str(value)
        try:
            expression = parse_expression(text)
        except ExpressionSyntaxError as exc:
            checker.error(
                checker.offset_in_value(phase, "until", exc.offset), f"until: {exc.message}"
            )
            return None, text
        for offset, message in check_expression(expression, self.parameter_names):
            checker.error(checker.offset_in_value(phase, "until", offset), f"until: {message}")
        return expression, text

    def _on_timeout(self, phase: CommentedMap) -> str:
        if "on_timeout" not in phase:
            return "hold"
        value = phase["on_timeout"]
        if isinstance(value, str) and value in ON_TIMEOUT_CHOICES:
            return str(value)
        self.checker.error(
            value_at(phase, "on_timeout"),
            f"on_timeout must be one of {', '.join(ON_TIMEOUT_CHOICES)}, not {describe(value)}",
        )
        return "hold"

    # ------------------------------------------------------------------------------ steps

    def _steps(self, phase: CommentedMap) -> tuple[Step, ...]:
        checker = self.checker
        seq = checker.sequence(phase["steps"], value_at(phase, "steps"), "steps")
        if seq is None:
            return ()
        transfers: list[Step] = []
        for index, item in enumerate(seq):
            loc = item_at(seq, index)
            if not isinstance(item, CommentedMap):
                checker.error(
                    loc,
                    f"a step must be a mapping such as 'transfer: {{...}}', not {describe(item)}",
                )
                continue
            if len(item) == 0:
                checker.error(loc, "empty step: give it a kind such as 'transfer'")
                continue
            for kind in item:
                if kind in STEP_KINDS:
                    continue
                message = f"unknown step kind {describe(kind)}"
                close = (
                    difflib.get_close_matches(kind, STEP_KINDS, n=1)
                    if isinstance(kind, str)
                    else []
                )
                message += (
                    f"; did you mean '{close[0]}'?"
                    if close
                    else f" (known: {', '.join(STEP_KINDS)})"
                )
                checker.error(key_at(item, kind), message)
            if len(item) > 1:
                extra = list(item)[1]
                checker.error(
                    key_at(item, extra),
                    f"a step has exactly one kind: put {describe(extra)} in its own '-' item",
                )
            if "transfer" in item:
                transfer = self._transfer(item["transfer"], value_at(item, "transfer"))
                if transfer is not None:
                    transfers.append(transfer)
            if "confirm" in item:
                confirm = read_confirm(checker, item["confirm"], value_at(item, "confirm"))
                if confirm is not None:
                    transfers.append(confirm)
        return tuple(transfers)

    def _transfer(self, body: object, loc: Loc) -> Transfer | None:
        checker = self.checker
        transfer = checker.mapping(body, loc, "transfer")
        if transfer is None:
            return None
        checker.check_keys(transfer, TRANSFER_KEYS, TRANSFER_REQUIRED, " in transfer", loc)
        pump = self._pump(transfer)
        rate = checker.positive(transfer, "rate_ml_min") if "rate_ml_min" in transfer else None
        volume: float | None = None
        volume_ok = False
        if "volume_ml" in transfer and "volume" in transfer:
            checker.error(
                key_at(transfer, "volume"), "give either volume_ml or 'volume: all', not both"
            )
        elif "volume_ml" in transfer:
            volume = checker.positive(transfer, "volume_ml")
            volume_ok = volume is not None
        elif "volume" in transfer:
            value = transfer["volume"]
            volume_ok = value == "all"
            if not volume_ok:
                checker.error(
                    value_at(transfer, "volume"),
                    "volume must be 'all' (use volume_ml for a number of mL), "
                    f"not {describe(value)}",
                )
        else:
            checker.error(loc, "transfer needs volume_ml (a number of mL) or 'volume: all'")
        if pump is None or rate is None or not volume_ok:
            return None
        return Transfer(pump=pump, volume_ml=volume, rate_ml_min=rate)

    def _pump(self, mapping: CommentedMap) -> str | None:
        if "pump" not in mapping or (pump := self.checker.text(mapping, "pump")) is None:
            return None
        if not pump.strip():
            self.checker.error(value_at(mapping, "pump"), "pump must name a pump such as 'media'")
            return None
        return pump

    def _density_control(self, body: object, loc: Loc) -> DensityControl | None:
        checker = self.checker
        control = checker.mapping(body, loc, "density_control")
        if control is None:
            return None
        checker.check_keys(control, DENSITY_KEYS, DENSITY_KEYS, " in density_control", loc)
        pump = self._pump(control)
        limit: float | str | None = None
        if "max_density" in control:
            value = control["max_density"]
            if isinstance(value, str):
                limit = self._parameter_reference(control, str(value))
            else:
                limit = checker.positive(control, "max_density")
        max_volume = None
        if "max_volume_ml" in control:
            max_volume = checker.positive(control, "max_volume_ml")
        if pump is None or limit is None or max_volume is None:
            return None
        return DensityControl(pump=pump, max_density=limit, max_volume_ml=max_volume)

    def _parameter_reference(self, control: CommentedMap, name: str) -> str | None:
        if name in self.parameter_names:
            return name
        declared = sorted(self.parameter_names)
        message = (
            f"max_density {name!r} is not a declared parameter "
            f"(parameters: {', '.join(declared) if declared else 'none'})"
        )
        close = difflib.get_close_matches(name, declared, n=1)
        if close:
            message += f"; did you mean '{close[0]}'?"
        self.checker.error(value_at(control, "max_density"), message)
        return None
