"""`shuttle-sim`: the virtual instrument alone, in scaled real time, for hardware-in-the-loop work.

It serves the simulated bioreactor controller over OPC UA and the pump and probe buses on
pseudo-terminals, prints where each device can be reached, and integrates the physics until it
is stopped, keeping its physical state whatever the daemon on the other side does. On a bench
(docs/hil.md) the buses go on existing serial devices (`--pump-port`, `--probe-port`: RS-485
adapters, or one end of a socat pair) and the controller on a network interface (`--listen`).

The simulators import nothing of the daemon: `--print-config` writes the daemon's configuration,
which only the daemon knows how to write, so the `shuttle-sim` console script
(`shuttled/simulation/shuttle_sim.py`) hands `main` a writer for it. Run as `python -m
simulators.cli`, the instrument serves alone and `--print-config` says it needs that script.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from drivers.clock import RealClock
from simulators.bench_config import (
    ConfigNotes,
    bench_ports,
    check_bench_args,
    daemon_view,
    line_settings,
)
from simulators.cartridges import parse_assignments
from simulators.faults import FaultFileInvalid, load_fault_file
from simulators.instrument import InstrumentEndpoints, VirtualInstrument, unit_id_of
from simulators.physical_state import StateFile, StateFileInvalid, check_state_file
from simulators.pty_bus import DEFAULT_TURNAROUND_S, SerialTiming
from simulators.serial_lines import SerialPortUnavailable

PHYSICS_PERIOD_S = 1.0  # process seconds between physics updates while serving

# Writes the daemon's configuration for these endpoints (as the daemon sees them): (endpoints,
# data directory or None for a new one, clock speed, comments on the bench's wiring) -> TOML text.
DaemonConfigWriter = Callable[[InstrumentEndpoints, Path | None, float, ConfigNotes], str]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shuttle-sim",
        description="Serve a virtual Cell Shuttle instrument (OPC UA bioreactor controller, "
        "pump and probe buses on pseudo-terminals or on serial devices) in scaled real time.",
    )
    parser.add_argument("--version", action="version", version=f"shuttle-sim {version('shuttled')}")
    parser.add_argument("--units", type=int, default=2, help="number of units (default 2)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="process seconds per wall second (default 1)"
    )
    parser.add_argument(
        "--opcua-port",
        type=int,
        default=0,
        help="TCP port of the controller on 127.0.0.1 or --listen (default: a free one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of sensor noise")
    parser.add_argument(
        "--faults", type=Path, metavar="FILE", help="fault file (YAML, SPEC §1) to inject"
    )
    parser.add_argument(
        "--cartridge", action="append", default=[], metavar="UNIT=ID",
        help="the cartridge installed in UNIT, reported by the controller as CartridgeId "
        "(default CRT-<unit>, e.g. CRT-U01); repeatable",
    )
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the physical state (plant, volume each pump moved, installed cartridges) in "
        "FILE across restarts, "
        "as a power cut would: restored at start, saved after every physics step",
    )
    parser.add_argument("--json", action="store_true", help="print the endpoints as JSON")
    security = parser.add_argument_group(
        "controller security",
        "The controller offers Basic256Sha256 and Aes256_Sha256_RsaPss with SignAndEncrypt and "
        "admits only clients whose certificate is in its trust list (PKI/trusted; an unknown "
        "one is refused and copied to PKI/rejected). --print-config puts the daemon's "
        "certificate there and the controller's in the daemon's trust list.",
    )
    security.add_argument(
        "--pki-dir", type=Path, metavar="PKI",
        help="the controller's certificates: own/, trusted/, rejected/, kept across restarts "
        "(default: DATA_DIR/simulated-controller-pki with --data-dir, else a temporary one)",
    )
    security.add_argument(
        "--allow-insecure", action="store_true",
        help="also offer SecurityPolicy None (unencrypted; for tests of that option only)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="data directory for the daemon's configuration (--print-config); "
        "default: a new temporary directory",
    )
    timing = parser.add_argument_group(
        "line settings and byte timing",
        "By default the pseudo-terminals answer as fast as the kernel copies bytes. With "
        "--byte-timing a reply arrives when it would on a real line: after the request's and "
        "the reply's time on the wire (at the baud rates and framings below) plus the device's "
        "turnaround, in simulated time (divided by --speed). Buses on serial devices "
        "(--pump-port, --probe-port) are opened at these settings and always take the line's "
        "time, in real time. --print-config writes them into the daemon's [buses.*] sections.",
    )
    timing.add_argument(
        "--byte-timing", action="store_true", help="time the serial buses like real lines"
    )
    timing.add_argument(
        "--pump-baud", type=float, default=115200.0, help="pump bus baud rate (default 115200)"
    )
    timing.add_argument(
        "--probe-baud", type=float, default=19200.0, help="probe bus baud rate (default 19200)"
    )
    timing.add_argument(
        "--pump-framing", default="8N1", metavar="8N1",
        help="pump bus data bits (7, 8), parity (N, E, O) and stop bits (1, 2) (default 8N1, "
        "SPEC §7)",
    )
    timing.add_argument(
        "--probe-framing", default="8N2", metavar="8N2",
        help="probe bus data bits (8: Modbus RTU), parity and stop bits (default 8N2, SPEC §8)",
    )
    timing.add_argument(
        "--turnaround-ms",
        type=float,
        default=DEFAULT_TURNAROUND_S * 1000.0,
        help=f"device response latency (default {DEFAULT_TURNAROUND_S * 1000.0:g} ms)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print a complete configuration for `shuttled serve --config`, then keep serving",
    )
    bench = parser.add_argument_group(
        "hardware-in-the-loop bench (docs/hil.md)",
        "Serve the buses on existing serial devices and the controller on a network interface, "
        "so that `shuttled serve` on the instrument PC reaches them over real wires.",
    )
    bench.add_argument(
        "--pump-port", action="append", default=[], metavar="DEV",
        help="serve the pump bus on this serial device (an RS-485 adapter, or one end of a socat "
        "pair) instead of a new pseudo-terminal; once per bus (a bus has 8 units)",
    )
    bench.add_argument(
        "--probe-port", action="append", default=[], metavar="DEV",
        help="serve the probe bus on this serial device; once per bus (a bus has 16 units)",
    )
    bench.add_argument(
        "--listen", default="127.0.0.1", metavar="HOST",
        help="serve the controller on this interface's address (0.0.0.0: every interface) "
        "instead of 127.0.0.1; secured as on loopback",
    )
    bench.add_argument(
        "--daemon-pump-port", action="append", default=[], metavar="DEV",
        help="with --print-config: the device the daemon opens for the pump bus (default "
        "/dev/shuttle-pumps, docs/hil.md's udev name, with a comment to check it)",
    )
    bench.add_argument(
        "--daemon-probe-port", action="append", default=[], metavar="DEV",
        help="with --print-config: the device the daemon opens for the probe bus (default "
        "/dev/shuttle-probes)",
    )
    return parser


async def serve(args: argparse.Namespace, daemon_config: DaemonConfigWriter | None) -> None:
    clock = RealClock(speed=args.speed)
    instrument = VirtualInstrument(
        args.units,
        now=clock.now,
        seed=args.seed,
        opcua_port=args.opcua_port,
        faults=args.fault_list,
        serial_timing=_serial_timing(args),
        pki_dir=_pki_dir(args),
        allow_insecure=args.allow_insecure,
        opcua_host=args.listen,
        bench_ports=bench_ports(args),
        cartridges=args.cartridges,
    )
    state_file = StateFile(instrument, args.state) if args.state else None
    if state_file is not None:
        state_file.restore()
    await instrument.start()
    clock.add_advance_listener(instrument.advance_to)
    if state_file is not None:
        clock.add_advance_listener(state_file.after_step)  # after the step it saves
    endpoints = instrument.endpoints()
    if args.print_config and daemon_config is not None:
        daemon_side, notes = daemon_view(endpoints, args)
        print(daemon_config(daemon_side, args.data_dir, args.speed, notes), end="", flush=True)
    elif args.json:
        print(json.dumps(asdict(endpoints)), flush=True)
    else:
        print(f"bioreactor controller: {endpoints.opcua_endpoint} ({endpoints.opcua_namespace})")
        print(f"  its certificate: {endpoints.opcua_certificate}")
        print(f"  admits clients whose certificate is in: {endpoints.opcua_trusted_clients}")
        for pump in endpoints.pumps:
            print(f"{pump.unit_id} pump {pump.name:<8} {pump.port} address {pump.address}")
        for probe in endpoints.probes:
            print(f"{probe.unit_id} probe          {probe.port} Modbus id {probe.device_id}")
        print("Ctrl-C stops the instrument.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        next_step = clock.now()
        while not stop.is_set():
            next_step += PHYSICS_PERIOD_S
            await clock.sleep_until(next_step)
    finally:
        if state_file is not None:
            state_file.save()
        await instrument.stop()


def _pki_dir(args: argparse.Namespace) -> Path | None:
    """Where the controller keeps its certificate and trust list: with a data directory, next
    to the daemon's, so a restarted simulator is still the controller the daemon trusts."""
    if args.pki_dir is not None:
        return Path(args.pki_dir)
    return args.data_dir / "simulated-controller-pki" if args.data_dir is not None else None


def _serial_timing(args: argparse.Namespace) -> SerialTiming | None:
    if not args.byte_timing:
        return None
    pump_line, probe_line = line_settings(args)
    return SerialTiming(
        speed=args.speed,
        pump_baud=args.pump_baud,
        probe_baud=args.probe_baud,
        turnaround_s=args.turnaround_ms / 1000.0,
        pump_bits_per_char=pump_line.bits_per_char,
        probe_bits_per_char=probe_line.bits_per_char,
    )


def main(argv: list[str] | None = None, daemon_config: DaemonConfigWriter | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.print_config and daemon_config is None:
        print("error: --print-config writes the daemon's configuration: run the shuttle-sim "
              "command installed with shuttled", file=sys.stderr)
        return 2
    if args.units < 1 or not args.speed > 0:
        print("error: --units must be at least 1 and --speed positive", file=sys.stderr)
        return 2
    if not (args.pump_baud > 0 and args.probe_baud > 0 and args.turnaround_ms >= 0):
        print("error: baud rates must be positive, --turnaround-ms not negative", file=sys.stderr)
        return 2
    problem = check_bench_args(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        units = [unit_id_of(i) for i in range(args.units)]
        args.cartridges = parse_assignments(args.cartridge, units)
        args.fault_list = load_fault_file(args.faults, units) if args.faults else []
        if args.state is not None:
            check_state_file(args.state, units)
    except (FaultFileInvalid, StateFileInvalid) as invalid:
        print(invalid, file=sys.stderr)
        return 1
    except ValueError as invalid:  # a --cartridge assignment
        print(f"error: {invalid}", file=sys.stderr)
        return 2
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args, daemon_config))
    except (SerialPortUnavailable, OSError) as unavailable:  # a device, or --listen's address
        print(f"error: {unavailable}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
