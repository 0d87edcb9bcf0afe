"""`confirm` steps (SPEC §12 "Operator steps"): read in order with transfers, and every mistake
located like any other key's."""

from __future__ import annotations

import pytest
from malformed_protocols import with_phases

from protocols import (
    LIBRARY_DIR,
    Confirm,
    ProtocolInvalid,
    Transfer,
    load_protocol_file,
    load_protocol_text,
)


def _phase(step: str) -> str:
    """One phase whose steps are `step` (YAML under `- `) and a transfer; the step is line 10."""
    return with_phases(
        "  - name: prepare\n"  # 7
        "    temperature: 37.0\n"  # 8
        "    steps:\n"  # 9
        f"      - confirm: {step}\n"  # 10
        "      - transfer: {pump: vector, volume_ml: 5, rate_ml_min: 5}\n"
    )


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProtocolInvalid) as info:
        load_protocol_text(text, "p.yaml")
    return [error.located for error in info.value.errors]


def test_a_confirm_step_keeps_its_place_among_the_steps() -> None:
    protocol = load_protocol_text(_phase(
        "{prompt: Connect the vector bag, record: [vector_lot, bag_id], verify: true}"))
    (phase,) = protocol.phases
    assert phase.steps == (
        Confirm("Connect the vector bag", ("vector_lot", "bag_id"), True),
        Transfer("vector", 5.0, 5.0),
    )
    assert phase.transfers == (Transfer("vector", 5.0, 5.0),)
    assert phase.operator_steps == ((0, phase.steps[0]),)
    assert load_protocol_text(_phase("{prompt: Look}")).phases[0].steps[0] == Confirm("Look")


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param("{prompt: Go, recrod: [lot]}", "10:31: unknown key 'recrod' in confirm; "
                     "did you mean 'record'?", id="unknown-key"),
        pytest.param("{record: [lot]}", "10:18: missing required key 'prompt' in confirm",
                     id="missing-prompt"),
        pytest.param("{prompt: '  '}", "10:27: prompt must not be empty", id="empty-prompt"),
        pytest.param("{prompt: 12}", "10:27: prompt must be text, not the number 12",
                     id="prompt-number"),
        pytest.param("{prompt: Go, record: [lot, 'bag id']}",
                     "10:45: invalid record name 'bag id'", id="bad-name"),
        pytest.param("{prompt: Go, record: [lot, 7]}",
                     "10:45: a record name must be text such as 'lot', not the number 7",
                     id="name-number"),
        pytest.param("{prompt: Go, record: [lot, bag, lot]}",
                     "10:50: duplicate record name 'lot' (already at 10:40)", id="duplicate-name"),
        pytest.param("{prompt: Go, record: lot}", "10:39: record must be a list of names",
                     id="record-not-a-list"),
        pytest.param("{prompt: Go, verify: yes please}",
                     "10:39: verify must be true or false, not 'yes please'", id="verify-text"),
        pytest.param("Go", "10:18: confirm must be a mapping of keys to values, not 'Go'",
                     id="not-a-mapping"),
    ],
)
def test_every_mistake_is_located(step: str, expected: str) -> None:
    found = errors_of(_phase(step))
    assert any(error.startswith(expected) for error in found), "\n".join(found)


def test_a_step_kind_is_still_one_per_item() -> None:
    text = _phase("{prompt: Go}").replace(
        "      - confirm: {prompt: Go}\n",
        "      - confirm: {prompt: Go}\n        transfer: {pump: vector, volume_ml: 5, "
        "rate_ml_min: 5}\n")
    assert any("a step has exactly one kind" in e for e in errors_of(text))


def test_car_t_asks_for_the_apheresis_lot_and_a_verified_vector_lot() -> None:
    protocol = load_protocol_file(LIBRARY_DIR / "car-t-14d.yaml")
    steps = {phase.name: [s for _, s in phase.operator_steps] for phase in protocol.phases}
    assert [s.record for s in steps["activation"]] == [("apheresis_lot",)]
    (vector,) = steps["transduction"]
    assert vector.record == ("vector_lot",) and vector.verify
    transduction = protocol.phase("transduction")
    assert isinstance(transduction.steps[0], Confirm)  # before any vector moves
    assert isinstance(transduction.steps[1], Transfer)
