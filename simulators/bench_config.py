"""`shuttle-sim`'s bench options: which devices it serves on, and what the daemon sees of them.

On a hardware-in-the-loop bench the simulator and the daemon are at the two ends of each wire:
`shuttle-sim` opens its end (`--pump-port`), the daemon the other (`--daemon-pump-port`, the
instrument PC's adapter). `--print-config` must therefore write the daemon's ends, not the
simulator's, and say where each came from: a port the user did not name is written as the udev
name docs/hil.md sets up (`/dev/shuttle-pumps`), with a comment asking to check it, rather than
left out, so the file is still one `shuttled serve` can read. The line settings it writes are the
ones shuttle-sim serves (`--pump-baud`, `--pump-framing`...), so the two ends agree as printed.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from drivers.serial_line import SerialLine
from simulators.instrument import (
    UNITS_PER_PROBE_BUS,
    UNITS_PER_PUMP_BUS,
    InstrumentEndpoints,
    buses_for,
)
from simulators.opcua_bioreactor import WILDCARD_HOSTS
from simulators.serial_lines import BenchPorts

DEFAULT_DAEMON_PORTS = {"pump": "/dev/shuttle-pumps", "probe": "/dev/shuttle-probes"}


@dataclass(frozen=True)
class ConfigNotes:
    """Comments for the printed configuration: per daemon port, what is at the other end of the
    wire; and one on the controller link, when its address needs checking."""

    buses: dict[str, str] = field(default_factory=dict)
    controller: str | None = None


def line_settings(args: argparse.Namespace) -> tuple[SerialLine, SerialLine]:
    """The pump and probe lines the options ask for, as the daemon's configuration takes them
    (standard rates; the probe bus is Modbus RTU): what shuttle-sim serves, it can print."""
    try:
        pump_line = SerialLine.parse(args.pump_baud, args.pump_framing)
    except ValueError as error:
        raise ValueError(f"pump bus (--pump-baud, --pump-framing): {error}") from None
    try:
        probe_line = SerialLine.parse(args.probe_baud, args.probe_framing, modbus=True)
    except ValueError as error:
        raise ValueError(f"probe bus (--probe-baud, --probe-framing): {error}") from None
    return pump_line, probe_line


def check_bench_args(args: argparse.Namespace) -> str | None:
    """The first problem with the bench options, as one line, or None."""
    try:
        line_settings(args)
    except ValueError as error:
        return str(error)
    for kind, per_bus in (("pump", UNITS_PER_PUMP_BUS), ("probe", UNITS_PER_PROBE_BUS)):
        needed = buses_for(args.units, per_bus)
        for option in (f"{kind}_port", f"daemon_{kind}_port"):
            given = getattr(args, option)
            if given and len(given) != needed:
                flag = "--" + option.replace("_", "-")
                return (f"{args.units} units have {needed} {kind} bus(es) of {per_bus} units: "
                        f"give {flag} {needed} time(s), not {len(given)}")
        if getattr(args, f"daemon_{kind}_port") and not getattr(args, f"{kind}_port"):
            return (f"--daemon-{kind}-port names the daemon's end of a serial line: give "
                    f"shuttle-sim's end with --{kind}-port too")
    duplicates = {p for p in args.pump_port if p in args.probe_port}
    if duplicates:
        return f"{sorted(duplicates)[0]} cannot carry both the pump and the probe bus"
    return None


def bench_ports(args: argparse.Namespace) -> BenchPorts:
    """The devices and line settings the instrument's buses are served with."""
    pump_line, probe_line = line_settings(args)
    return BenchPorts(
        pump_ports=tuple(args.pump_port),
        probe_ports=tuple(args.probe_port),
        pump_line=pump_line,
        probe_line=probe_line,
        turnaround_s=args.turnaround_ms / 1000.0,
        daemon_pump_ports=tuple(args.daemon_pump_port),
        daemon_probe_ports=tuple(args.daemon_probe_port),
    )


def _daemon_port(kind: str, index: int, given: list[str]) -> str:
    if given:
        return given[index]
    return DEFAULT_DAEMON_PORTS[kind] + (str(index + 1) if index else "")


def daemon_view(
    endpoints: InstrumentEndpoints, args: argparse.Namespace
) -> tuple[InstrumentEndpoints, ConfigNotes]:
    """The endpoints as the daemon reaches them, and what the configuration should say about
    each: on pseudo-terminals both ends are the same path and nothing needs saying. Each
    endpoint keeps the line settings shuttle-sim serves it at, which the daemon must open."""
    pump_line, probe_line = line_settings(args)
    ports: dict[str, str] = {}  # shuttle-sim's end -> the daemon's end
    notes: dict[str, str] = {}
    for kind, sim_ports, daemon_ports, line in (
        ("pump", args.pump_port, args.daemon_pump_port, pump_line),
        ("probe", args.probe_port, args.daemon_probe_port, probe_line),
    ):
        for index, sim_port in enumerate(sim_ports):
            daemon_port = _daemon_port(kind, index, daemon_ports)
            ports[sim_port] = daemon_port
            wire = (f"{kind} bus {index + 1}: shuttle-sim answers at the other end of the wire, "
                    f"on {sim_port} at {line}; baud and framing below are the same, change "
                    "them only together with shuttle-sim's (or a device's) settings")
            if not daemon_ports:
                wire = (f"CHECK: {daemon_port} is the udev name docs/hil.md gives the instrument "
                        f"PC's adapter for the {kind} bus; write your device here if it is "
                        f"another. " + wire)
            notes[daemon_port] = wire
    daemon_side = dataclasses.replace(
        endpoints,
        pumps=[dataclasses.replace(p, port=ports.get(p.port, p.port), line=pump_line)
               for p in endpoints.pumps],
        probes=[dataclasses.replace(p, port=ports.get(p.port, p.port), line=probe_line)
                for p in endpoints.probes],
    )
    controller = None
    if args.listen in WILDCARD_HOSTS:
        controller = (f"CHECK: the simulated controller listens on every interface of the "
                      f"shuttle-sim box ({args.listen}); the endpoint below uses that box's host "
                      f"name: write the address the instrument PC reaches it by, if another.")
    return daemon_side, ConfigNotes(notes, controller)
