"""`shuttle-sim --state FILE`: the plant and what each pump moved outlive the simulator; the pump
modules' counters do not (SPEC §7), as after a power cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from firmware_stubs.pump import encode_frame
from simulators import plant
from simulators.instrument import VirtualInstrument
from simulators.physical_state import StateFile, StateFileInvalid, read_state


async def test_a_restarted_instrument_keeps_its_liquid_and_totals_with_fresh_counters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plant-state.json"
    now = [0.0]
    first = VirtualInstrument(1, now=lambda: now[0], seed=1)
    first.arrays.cartridges[0] = "CRT-SWAPPED-7"  # as a cartridge_swap fault leaves it
    saved = StateFile(first, path)
    assert not saved.restore()  # nothing to restore yet
    media = first.pump_firmware[("U01", "media")]
    assert b"OK" in media.handle_line(encode_frame("@1:1 DISPENSE 5000 5000"), 0.0)
    now[0] = 30.0
    await first.advance_to(30.0)  # half of 5 mL at 5 mL/min
    await saved.after_step(30.0)
    await first.stop()
    assert read_state(path).moved_ml("U01", "media") == pytest.approx(2.5)
    assert read_state(path).volume_ml("U01") == pytest.approx(102.5)

    second = VirtualInstrument(1, now=lambda: 0.0, seed=2, cartridges={"U01": "CRT-CLI"})
    restored = StateFile(second, path)
    assert restored.restore()
    assert second.arrays.cartridges == ["CRT-SWAPPED-7"]  # it stayed in its unit
    assert second.state[0, plant.VOLUME_ML] == pytest.approx(102.5)
    assert second.arrays.volume_ml[0] == pytest.approx(102.5)  # what the controller serves
    assert second.pump_firmware[("U01", "media")].dispensed_ul == 0.0  # volatile, as a pump's
    assert not second.pump_firmware[("U01", "media")].running  # powers up stopped
    assert restored.pump_totals_ul()["U01/media"] == pytest.approx(2500.0)
    restored.save()
    assert read_state(path).moved_ml("U01", "vector") == 0.0
    await second.stop()


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulators.cli", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("content", "units", "message"),
    [
        ("{not json", "1", "cannot read the state file"),
        (json.dumps({"format": 9}), "1", "not a shuttle-sim state file"),
        (json.dumps({"format": 1, "units": ["U01"]}), "1", "malformed state file"),
        (
            json.dumps({"format": 1, "units": ["U01"], "plant": [[0.0]], "pump_totals_ul": {}}),
            "1",
            "expected 1 plant rows of",
        ),
        (None, "2", "holds units U01, the instrument has U01, U02"),
        ("cartridges", "1", "expected 1 valid cartridge ids"),
    ],
)
def test_a_state_file_that_does_not_fit_is_refused_with_its_reason(
    tmp_path: Path, content: str | None, units: str, message: str
) -> None:
    path = tmp_path / "plant-state.json"
    if content in (None, "cartridges"):  # a good file of a one-unit instrument
        instrument = VirtualInstrument(1, now=lambda: 0.0)
        StateFile(instrument, path).save()
        if content == "cartridges":  # ... whose cartridge id is not one
            data = json.loads(path.read_text())
            path.write_text(json.dumps({**data, "cartridges": [" "]}))
    else:
        path.write_text(content)
    result = _sim("--units", units, "--state", str(path))
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_state_file_in_a_missing_directory_is_refused_before_serving(tmp_path: Path) -> None:
    result = _sim("--state", str(tmp_path / "nowhere" / "state.json"))
    assert result.returncode == 1 and "no such directory" in result.stderr


def test_read_state_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(StateFileInvalid, match=r"missing\.json"):
        read_state(tmp_path / "missing.json")
