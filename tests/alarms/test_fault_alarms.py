"""Faults from a fault file (SPEC §1) raise the alarms an operator must see, with their
severities, through the whole daemon in-process: the virtual instrument on a virtual clock, the
real drivers over loopback OPC UA and pseudo-terminals (a link fault needs a link), the control
loop and the alarm model as the composition root wires them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from drivers.clock import VirtualClock
from protocols.loader import load_protocol_file
from shuttled.composition import Daemon
from shuttled.records.alarm_journal import AlarmJournal
from shuttled.reports.data import load_report_data
from shuttled.reports.html import render_report
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators.faults import load_fault_text
from simulators.instrument import VirtualInstrument

DEMO = Path(__file__).resolve().parents[2] / "protocols" / "library" / "demo.yaml"
FAULTS = """\
- {at: 2m, fault: sensor_nan, unit: U01, sensor: temperature, duration: 1m}
- {at: 5m, fault: opcua_down, duration: 1m}
- {at: 8m, fault: serial_cut, bus: probes, duration: 1m}
"""


async def test_faults_raise_alarms_with_their_severities_and_idle_units_suppress(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    instrument = VirtualInstrument(2, now=clock.now, seed=1,
                                   faults=load_fault_text(FAULTS, unit_ids=["U01", "U02"]))
    clock.add_advance_listener(instrument.advance_to)
    await instrument.start()
    config = config_for_instrument(instrument.endpoints(), tmp_path, 0, users_file=None)
    daemon_config = config.model_copy(update={"device_timeout_s": 0.2}).to_daemon_config()
    trust_each_other(instrument.endpoints(), daemon_config)
    daemon = Daemon(replace(daemon_config, operator=None), clock, restore_runs=False)
    try:
        await daemon.start()
        protocol = load_protocol_file(DEMO)
        loaded = daemon.operations.load_protocol("U01", protocol.text, user="test")
        daemon.operations.start("U01", loaded.template_id, {}, "alarm test", "test")
        await daemon.run_until(lambda: clock.now() >= 12 * 60)
    finally:
        await daemon.stop()
        await instrument.stop()
    journal = AlarmJournal(tmp_path / "journal.sqlite3")
    raised = {
        (s["unit"], s["name"]): (s["severity"], s["suppressed"], s["active"])
        for s in journal.load_states()
    }
    journal.close()
    assert raised[("U01", "TEMPERATURE_SENSOR_BAD")] == (800, False, False)
    assert raised[("U01", "BIOREACTOR_LOST")] == (800, False, False)
    assert raised[("U02", "BIOREACTOR_LOST")] == (800, False, False)
    assert raised[("U01", "PROBE_LOST")] == (500, False, False)
    assert raised[("U02", "PROBE_LOST")][:2] == (500, True)  # U02 is idle: by design
    # everything cleared by itself; what was never acknowledged waits for an operator
    current = {(a.unit, a.name): a.state for a in daemon.alarms.current(everything=True)}
    assert current[("U01", "BIOREACTOR_LOST")] == "RTN_UNACKED"
    assert ("U02", "PROBE_LOST") not in current
    # the run report lists the alarms' lifecycle (transitions while U01's run lasted)
    data = load_report_data(tmp_path / "journal.sqlite3", daemon.runs["U01"].run_id)
    kinds = [(e["name"], e["kind"]) for e in data.alarm_lifecycle]
    assert ("TEMPERATURE_SENSOR_BAD", "raised") in kinds
    assert ("BIOREACTOR_LOST", "cleared") in kinds
    html = render_report(data)
    assert "<th>transition</th>" in html and "TEMPERATURE_SENSOR_BAD" in html
