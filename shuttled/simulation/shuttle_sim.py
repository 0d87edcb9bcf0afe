"""`shuttle-sim`: the virtual instrument (`simulators/cli.py`) plus what only the daemon knows.

The instrument serves on its own; this console script adds the daemon's side of the bench:
`--print-config` writes a configuration `shuttled serve` accepts as it is, with a `sim`
supervisor account and the device link's certificates exchanged (encrypted, as on a plant), and
the daemon's log format. On a hardware-in-the-loop bench the simulator's side says what is at the
other end of each wire (`ConfigNotes`), which this writer turns into TOML comments above the
sections they are about, since a bench engineer reads the file before starting the daemon.
Keeping it here is what lets `simulators/` import nothing of `shuttled/`.
"""

from __future__ import annotations

import sys
import tempfile
import textwrap
from pathlib import Path

from shuttled.records.users import create_simulation_account
from shuttled.service.config_file import BusSection, render_config
from shuttled.service.log_setup import configure_logging
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators import cli
from simulators.bench_config import ConfigNotes
from simulators.instrument import InstrumentEndpoints
from simulators.opcua_bioreactor import free_loopback_port


def daemon_config_text(
    endpoints: InstrumentEndpoints,
    data_dir: Path | None,
    speed: float,
    notes: ConfigNotes | None = None,
) -> str:
    """A configuration `shuttled serve` accepts as it is, with a `sim` supervisor account, and
    the controller and the daemon (under `data_dir`) trusting each other's certificates; the
    bench's `notes` as comments."""
    data_dir = (data_dir or Path(tempfile.mkdtemp(prefix="shuttle-sim-"))).resolve()
    users_file, _ = create_simulation_account(data_dir)
    config = config_for_instrument(
        endpoints, data_dir, free_loopback_port(), users_file, clock_speed=speed
    )
    trust_each_other(endpoints, config.to_daemon_config())
    text = render_config(config)
    if notes is not None:
        text = _with_comments(text, config.buses, notes)
    return text + "# end of configuration; shuttle-sim keeps serving\n"


def _with_comments(text: str, buses: dict[str, BusSection], notes: ConfigNotes) -> str:
    """`notes` as comment lines just above the section each is about."""
    above = {f"[buses.{name}]": notes.buses[bus.port]
             for name, bus in buses.items() if bus.port in notes.buses}
    if notes.controller is not None:
        above["[bioreactors.sim]"] = notes.controller
    lines = []
    for line in text.splitlines(keepends=True):
        if line.strip() in above:
            lines += [f"# {part}\n" for part in textwrap.wrap(above[line.strip()], 96)]
        lines.append(line)
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return cli.main(argv, daemon_config=daemon_config_text)


if __name__ == "__main__":
    sys.exit(main())
