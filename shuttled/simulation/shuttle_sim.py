"""`shuttle-sim`: the virtual instrument (`simulators/cli.py`) plus what only the daemon knows.

The instrument serves on its own; this console script adds the daemon's side of the bench:
`--print-config` writes a configuration `shuttled serve` accepts as it is, with a `sim`
supervisor account and the device link's certificates exchanged (encrypted, as on a plant), and
the daemon's log format. Keeping it here is what lets `simulators/` import nothing of `shuttled/`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from shuttled.records.users import create_simulation_account
from shuttled.service.config_file import render_config
from shuttled.service.log_setup import configure_logging
from shuttled.simulation.instrument_config import config_for_instrument, trust_each_other
from simulators import cli
from simulators.instrument import InstrumentEndpoints
from simulators.opcua_bioreactor import free_loopback_port


def daemon_config_text(endpoints: InstrumentEndpoints, data_dir: Path | None, speed: float) -> str:
    """A configuration `shuttled serve` accepts as it is, with a `sim` supervisor account, and
    the controller and the daemon (under `data_dir`) trusting each other's certificates."""
    data_dir = (data_dir or Path(tempfile.mkdtemp(prefix="shuttle-sim-"))).resolve()
    users_file, _ = create_simulation_account(data_dir)
    config = config_for_instrument(
        endpoints, data_dir, free_loopback_port(), users_file, clock_speed=speed
    )
    trust_each_other(endpoints, config.to_daemon_config())
    return render_config(config) + "# end of configuration; shuttle-sim keeps serving\n"


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    return cli.main(argv, daemon_config=daemon_config_text)


if __name__ == "__main__":
    sys.exit(main())
