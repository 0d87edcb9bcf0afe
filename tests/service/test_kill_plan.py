"""The crash torture's kill plan: reproducible, spread over the protocol, aimed at transfers."""

from __future__ import annotations

from pathlib import Path

from kill_plan import HELD, RESTARTING, TIMELINE, kill_plan, timeline

from protocols.loader import load_protocol_file

WINDOWS = timeline(load_protocol_file(Path(__file__).with_name("crash-torture.yaml")))
PHASES = {w.phase: w.phase_index for w in WINDOWS}


def test_the_timeline_is_the_protocol_run_without_interruption() -> None:
    transfers = [(w.pump, w.length_s, w.start_volume_ml, w.sign) for w in WINDOWS if w.pump]
    assert transfers == [
        ("media", 240.0, 100.0, 1.0), ("vector", 180.0, 120.0, 1.0),
        ("harvest", 240.0, 126.0, -1.0),
    ]  # fmt: skip
    assert sum(w.length_s for w in WINDOWS) == 18 * 60


def test_the_same_seed_gives_the_same_kills_and_another_seed_others() -> None:
    assert kill_plan(WINDOWS, 25, 14) == kill_plan(WINDOWS, 25, 14)
    assert kill_plan(WINDOWS, 25, 14) != kill_plan(WINDOWS, 25, 15)


def test_kills_hit_every_transfer_at_its_edges_and_the_restart_path() -> None:
    plan = kill_plan(WINDOWS, 25, 14)
    assert len(plan) == 25
    kinds = [m.kind for m in plan]
    assert kinds.count(HELD) == kinds.count(RESTARTING) == 2 and kinds[0] == TIMELINE
    for pump in ("media", "vector", "harvest"):
        shares = [m.share for m in plan if m.window is not None and m.window.pump == pump]
        assert min(shares) <= 0.05 and max(shares) >= 0.95, pump
    placed = [(m.window.phase_index, m.share) for m in plan if m.window is not None]
    assert placed == sorted(placed)  # in the order the run gets there


def test_a_moment_is_reached_by_phase_then_by_time_left_or_volume_moved() -> None:
    media = next(m for m in kill_plan(WINDOWS, 200, 1) if m.window and m.window.pump == "media"
                 and 0.4 < m.share < 0.6)  # fmt: skip
    halfway = 100.0 + media.share * 20.0
    seen = {"CurrentStepName": "settle", "Volume": 100.0}
    assert not media.reached(seen, PHASES)
    assert not media.reached({**seen, "CurrentStepName": "feed / transfer media"}, PHASES)
    assert media.reached({"CurrentStepName": "feed / transfer media", "Volume": halfway}, PHASES)
    assert media.reached({"CurrentStepName": "mix", "Volume": 100.0}, PHASES)  # already past

    wait = next(m for m in kill_plan(WINDOWS, 200, 1) if m.window and m.window.phase == "mix")
    left = wait.window.remaining_after_s + (1 - wait.share) * 120.0
    assert not wait.reached({"CurrentStepName": "mix", "EstimatedRemaining": left + 5}, PHASES)
    assert wait.reached({"CurrentStepName": "mix", "EstimatedRemaining": left}, PHASES)
