"""`shuttled`: the daemon's console script. `serve` runs the service (shuttled/service/serve.py),
`simulate` the same daemon against a virtual instrument (shuttled/simulation/simulate.py); both
build it through the composition root (shuttled/composition.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shuttled.cli import console_command
from shuttled.cli.common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_REFUSED,
    MAX_SPEED,
    add_version,
    fail,
    parameter_assignment,
    positive_int,
    speed,
    text_assignment,
)

if TYPE_CHECKING:
    from shuttled.config import MqttConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shuttled", description="Control daemon of a Cell Shuttle instrument."
    )
    add_version(parser, "shuttled")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the service (systemd's ExecStart)",
        description="Run the service with the configuration FILE (default $SHUTTLED_CONFIG or "
        "/etc/shuttled/shuttled.toml). Exit 78 on an invalid configuration.",
    )
    serve.add_argument("--config", type=Path, metavar="FILE", help="configuration file (TOML)")
    serve.add_argument("--log-level", default="info", help="log level on stderr (default info)")
    sim = commands.add_parser(
        "simulate",
        help="run the daemon against an in-process virtual instrument",
        description="Run the daemon against a virtual instrument (real OPC UA server and "
        "pseudo-terminals on this machine). With --protocol, run it on every unit (or --unit) "
        "and exit 0 only if every run is COMPLETE.",
    )
    sim.add_argument("--units", type=positive_int, default=2, help="number of units (default 2)")
    sim.add_argument(
        "--speed",
        type=speed,
        default=None,
        help="'max' (as fast as possible; the default with --protocol) or a factor of real "
        "time (default 1 without --protocol, so shuttlectl can be tried against it)",
    )
    sim.add_argument(
        "--protocol",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="protocol to run; repeat to deal several round-robin over the units",
    )
    sim.add_argument("--unit", help="run the protocol on this unit only (e.g. U01)")
    sim.add_argument("--seed", type=int, default=0, help="seed of sensor noise (default 0)")
    sim.add_argument("--data-dir", type=Path, help="keep the journal here (default: temporary)")
    sim.add_argument(
        "--param",
        type=parameter_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a protocol parameter",
    )
    sim.add_argument(
        "--faults",
        type=Path,
        metavar="FILE",
        help="fault file (YAML, SPEC §1): faults injected into the virtual instrument at "
        "simulated times",
    )
    sim.add_argument(
        "--cartridge",
        action="append",
        default=[],
        metavar="UNIT=ID",
        help="the cartridge installed in UNIT (default CRT-<unit>); repeatable. Runs started "
        "with --protocol are bound to it and to a batch SIM-<seed>-<unit> (SPEC §12)",
    )
    sim.add_argument(
        "--opcua-port",
        type=positive_int,
        metavar="P",
        help="port of the operator OPC UA server on loopback (default: 4840 when serving "
        "without --protocol and free, else any free port)",
    )
    sim.add_argument(
        "--users",
        type=Path,
        metavar="FILE",
        help="users file for the operator interface (default: a 'sim' supervisor with a random "
        "password in <data-dir>/sim-credentials)",
    )
    sim.add_argument(
        "--mqtt",
        type=mqtt_broker,
        metavar="HOST[:PORT]",
        help="publish telemetry to this MQTT broker (SPEC §6; default port 1883)",
    )
    sim.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write one self-contained HTML report per run into DIR (RUN_ID.html)",
    )
    sim.add_argument(
        "--gmp",
        action="store_true",
        help="GMP mode (SPEC §12): Start takes only approved protocols; for serving, without "
        "--protocol (people submit and approve through shuttlectl)",
    )
    sim.add_argument(
        "--confirm",
        type=text_assignment,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="the value the simulation records for NAME when it answers an operator step "
        "(repeatable; default: made up from the seed, e.g. SIM-LOT-3F2A9C)",
    )
    sim.add_argument(
        "--no-auto-confirm",
        dest="auto_confirm",
        action="store_false",
        help="with --protocol, leave operator steps to people (shuttlectl confirm/verify) "
        "instead of answering them as the simulation",
    )
    sim.add_argument("--json", action="store_true", help="print one JSON object per run")
    console_command.add_simulate_option(sim)
    sim.add_argument("--log-level", default="warning", help="log level on stderr (default warning)")
    console_command.add_parser(commands)
    return parser


def mqtt_broker(text: str) -> MqttConfig:
    """`HOST[:PORT]` (`[::1]:1883` for IPv6) as an MQTT configuration with defaults."""
    from shuttled.config import MqttConfig  # not at import time: it brings numba with it

    host, port = text, "1883"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST[:PORT], got {text!r}")
    return MqttConfig(host=host, port=int(port))


def _speed_for(args: argparse.Namespace) -> float | None:
    """None is as fast as possible: right for running protocols, pointless for serving idle."""
    if args.speed is not None:
        return None if args.speed == MAX_SPEED else args.speed
    return None if args.protocol else 1.0


def run_simulate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from protocols import ParameterError, ProtocolInvalid
    from shuttled.records.private_files import PrivateFileError
    from shuttled.reports.summary import print_table
    from shuttled.service.log_setup import configure_logging
    from shuttled.simulation.simulate import SimulateOptions, SimulationRefused, simulate
    from simulators.faults import FaultFileInvalid

    configure_logging(args.log_level)
    options = SimulateOptions(
        units=args.units,
        speed=_speed_for(args),
        protocols=args.protocol,
        unit=args.unit,
        seed=args.seed,
        data_dir=args.data_dir,
        parameters=dict(args.param),
        faults=args.faults,
        cartridges=args.cartridge,
        opcua_port=args.opcua_port,
        users_file=args.users,
        report_dir=args.report,
        mqtt=args.mqtt,
        gmp=args.gmp,
        auto_confirm=args.auto_confirm,
        confirm_values=dict(args.confirm),
    )
    # Wide enough for the summary table when the output goes to a file or a pipe.
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 132)
    try:
        if args.console is None:
            summaries = asyncio.run(simulate(options, console))
        else:  # the operator console on the same loop (SPEC §14)
            summaries = asyncio.run(
                console_command.simulate_with_console(options, console, args.console))
    except (ProtocolInvalid, FaultFileInvalid) as invalid:
        for error in invalid.errors:
            print(error, file=sys.stderr)
        return EXIT_REFUSED
    except (SimulationRefused, ParameterError, PrivateFileError) as refused:
        return fail(str(refused))  # PrivateFileError: a symlink where sim-credentials belongs
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    if args.json:
        for summary in summaries:
            print(summary.to_json())
    elif summaries:
        print_table(summaries, console)
    return EXIT_OK if all(s.state == "COMPLETE" for s in summaries) else EXIT_REFUSED


def run_serve(args: argparse.Namespace) -> int:
    import gc

    # Start-up allocates millions of long-lived objects and next to no garbage: without the
    # cyclic collector walking them again and again, READY=1 comes 0.2 s sooner. serve() collects
    # once and turns it back on after READY=1 (resume_garbage_collection); the `finally` is for
    # the ways out before that (a bad configuration, a server that cannot listen).
    gc.disable()
    try:
        return _serve(args)
    finally:
        gc.enable()


def _serve(args: argparse.Namespace) -> int:
    import faulthandler
    import os

    from shuttled.service.config_file import DEFAULT_CONFIG_PATH, ConfigError, load_config
    from shuttled.service.log_setup import configure_logging
    from shuttled.service.serve import serve

    faulthandler.enable()  # a watchdog kill (SIGABRT) leaves every thread's stack in the journal
    configure_logging(args.log_level)
    path = args.config or Path(os.environ.get("SHUTTLED_CONFIG", DEFAULT_CONFIG_PATH))
    try:
        config = load_config(path)
    except ConfigError as error:
        return fail(str(error), EXIT_CONFIG)
    from shuttled.operator_server import OperatorServerError

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config))
    except OperatorServerError as error:
        return fail(str(error))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "simulate":
        return run_simulate(args)
    if args.command == "console":
        return console_command.run(args)
    return EXIT_REFUSED  # pragma: no cover - argparse requires a known command


if __name__ == "__main__":
    sys.exit(main())
