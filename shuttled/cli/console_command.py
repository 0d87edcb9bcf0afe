"""`shuttled console` and `shuttled simulate --console PORT`: the operator console (SPEC §14).

The console is an OPC UA client of a running daemon; this module only parses its options and
starts it, alone (its own event loop and signal handling) or as one more task on the
simulation's loop, where the simulation hands over the endpoint once its operator interface
serves (`SimulateOptions.on_serving`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from shuttled.cli.common import EXIT_OK, EXIT_USAGE, fail, positive_int

if TYPE_CHECKING:
    from rich.console import Console

    from shuttled.reports.summary import RunSummary
    from shuttled.simulation.simulate import SimulateOptions

DEFAULT_ENDPOINT = "opc.tcp://127.0.0.1:4840/shuttled"


def _port(text: str) -> int:
    port = positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {port}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "console",
        help="serve the operator console (web) of a running daemon",
        description="Serve the operator console: a web page for the instrument. Each person "
        "signs in with their daemon account; every action is a call in their own OPC UA "
        "session, so the daemon authorizes and audits it (SPEC §14).",
    )
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, metavar="OPCUA_URL",
                        help=f"the daemon's operator interface (default {DEFAULT_ENDPOINT})")
    parser.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                        help="where to serve (default 127.0.0.1:8080; another address than "
                        "loopback needs --tls-cert and --tls-key)")
    parser.add_argument("--tls-cert", type=Path, metavar="F", help="TLS certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, metavar="F", help="TLS private key (PEM)")
    parser.add_argument("--idle-lock-s", type=_seconds, default=15 * 60.0, metavar="N",
                        help="lock a session after N seconds without activity (default 900)")
    parser.add_argument("--pki-dir", type=Path, metavar="DIR",
                        help="the console's OPC UA client certificate (default "
                        "~/.config/shuttled-console/pki)")
    parser.add_argument("--log-level", default="info", help="log level on stderr (default info)")


def add_simulate_option(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--console", type=_port, metavar="PORT",
                     help="also serve the operator console on 127.0.0.1:PORT (SPEC §14)")


def run(args: argparse.Namespace) -> int:
    from shuttled.console.server import (
        ConsoleOptions,
        ConsoleRefused,
        ConsoleServer,
        parse_listen,
    )
    from shuttled.service.log_setup import configure_logging

    configure_logging(args.log_level)
    try:
        host, port = parse_listen(args.listen)
    except ValueError as error:
        return fail(str(error), EXIT_USAGE)
    options = ConsoleOptions(endpoint=args.endpoint, host=host, port=port,
                             tls_cert=args.tls_cert, tls_key=args.tls_key,
                             idle_lock_s=args.idle_lock_s, pki_dir=args.pki_dir)

    async def serve() -> None:
        server = ConsoleServer(options, own_signals=True)
        await server.start()
        print(f"Operator console: {server.url} (daemon {options.endpoint})", flush=True)
        await server.wait()

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve())
    except ConsoleRefused as error:
        return fail(str(error))
    return EXIT_OK


async def simulate_with_console(options: SimulateOptions, console: Console,
                                port: int) -> list[RunSummary]:
    """`simulate` with the console on the same loop, from the moment the daemon serves until
    the simulation ends."""
    from shuttled.console.server import ConsoleOptions, ConsoleRefused, ConsoleServer
    from shuttled.simulation.simulate import SimulationRefused, simulate

    servers: list[ConsoleServer] = []

    async def start(endpoint: str, credentials: Path | None) -> None:
        try:
            server = ConsoleServer(ConsoleOptions(endpoint=endpoint, port=port))
            await server.start()
        except ConsoleRefused as error:
            raise SimulationRefused(str(error)) from None
        servers.append(server)
        how = f": sign in as sim, password in {credentials}" if credentials else ""
        console.print(f"Operator console: {server.url}{how}", soft_wrap=True)
        console.file.flush()

    async def stop() -> None:
        while servers:
            await servers.pop().stop()

    options.on_serving.append(start)
    options.on_stopping.append(stop)
    try:
        return await simulate(options, console)
    finally:
        await stop()  # when the simulation failed before it stopped anything
