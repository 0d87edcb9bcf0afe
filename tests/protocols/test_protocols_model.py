"""Parameters: defaults, overrides and bounds; identity of a loaded protocol."""

from __future__ import annotations

import math
import re

import pytest

from protocols import LIBRARY_DIR, ParameterError, Protocol, load_protocol_file, load_protocol_text

TEXT = """\
shuttle_protocol: 1
name: params
version: 0.3.1
parameters:
  target_cells: {default: 1.0e9, min: 1.0e8, max: 1.0e10, unit: cells}
  max_density: {default: 2.0e6, min: 5.0e5, max: 1.0e7}
phases:
  - name: expansion
    temperature: 37
    density_control: {pump: media, max_density: max_density, max_volume_ml: 800}
    until: total_cells >= target_cells
    timeout: 10d
  - name: rest
    temperature: 36
    density_control: {pump: media, max_density: 3e6, max_volume_ml: 800}
    duration: 1h
"""


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return load_protocol_text(TEXT)


def test_defaults(protocol: Protocol) -> None:
    assert protocol.resolve_parameters({}) == {"target_cells": 1.0e9, "max_density": 2.0e6}
    assert protocol.resolve_parameters() == protocol.resolve_parameters({})
    assert protocol.parameters["max_density"].unit == ""


@pytest.mark.parametrize("value", [1.0e8, 1.0e10, 5e9, 200000000])
def test_override_within_bounds(protocol: Protocol, value: float) -> None:
    assert protocol.resolve_parameters({"target_cells": value})["target_cells"] == value


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"target_cells": 9.9e7}, "outside its allowed range [1e+08, 1e+10] cells"),
        ({"target_cells": 1.1e10}, "outside its allowed range"),
        ({"target_cells": math.nan}, "must be a finite number"),
        ({"target_cells": math.inf}, "must be a finite number"),
        ({"target_cells": True}, "must be a number"),
        ({"target_cells": "1e9"}, "must be a number"),
        ({"target": 1e9}, "unknown parameter 'target' for protocol params@0.3.1#"),
    ],
)
def test_override_refused(protocol: Protocol, overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ParameterError, match=re.escape(fragment)):
        protocol.resolve_parameters(overrides)


def test_phase_max_density(protocol: Protocol) -> None:
    params = protocol.resolve_parameters({"max_density": 4e6})
    assert protocol.phase_max_density(protocol.phases[0], params) == 4e6
    assert protocol.phase_max_density(protocol.phases[1], params) == 3e6


def test_until_evaluates_with_parameters(protocol: Protocol) -> None:
    until = protocol.phases[0].until
    params = protocol.resolve_parameters()
    assert until.evaluate({**params, "total_cells": 1.5e9})
    assert not until.evaluate({**params, "total_cells": 0.5e9})


def test_identity(protocol: Protocol) -> None:
    assert protocol.identity.startswith("params@0.3.1#")
    assert protocol.identity == f"params@0.3.1#{protocol.sha256[:12]}"
    assert len(protocol.sha256) == 64
    assert protocol.text == TEXT
    # A comment changes the bytes, so it changes the identity: the record names the exact file.
    assert load_protocol_text(TEXT + "# note\n").identity != protocol.identity
    assert load_protocol_text(TEXT).identity == protocol.identity


def test_protocol_is_frozen(protocol: Protocol) -> None:
    with pytest.raises(AttributeError):
        protocol.name = "other"
    with pytest.raises(AttributeError):
        protocol.phases[0].temperature = 40.0


def test_demo_identity_is_stable() -> None:
    first = load_protocol_file(LIBRARY_DIR / "demo.yaml")
    second = load_protocol_file(str(LIBRARY_DIR / "demo.yaml"))
    assert first.identity == second.identity
    assert first.identity.startswith("demo@1.0.0#")
