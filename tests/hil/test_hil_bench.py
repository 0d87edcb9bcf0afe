"""The bench of docs/hil.md without hardware (issue 20): `shuttle-sim` on one end of two socat
pairs and its controller on 127.0.0.2, `shuttled serve` as systemd runs it on the other ends with
the configuration the simulator printed.

A short protocol moves liquid with all three pumps and must end with exactly the protocol's
volumes, as the simulator's own account (`--state`) has them, at the standard line settings and
at a plant's own (the daemon's `[buses.*]` as `--print-config` wrote them); a daemon configured
at another baud rate or parity than its devices must give the "no valid reply" alarms, not a
hang; the controller on its listen address must refuse a client whose certificate it does not
trust. Every wait is on something a process says (the printed configuration, READY=1, data
changes), each bounded.

On a socat pair the kernel keeps a port's baud rate, stop bits and odd parity (not even parity
or data bits), and shuttle-sim reads the daemon's end to play the wire (`simulators.far_end`):
so these runs prove that the daemon opens its ports as its configuration says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import termios
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
from asyncua import Client
from crash_rig import (
    BIN,
    CONFIG_END,
    START_TIMEOUT_S,
    Daemon,
    Operator,
    _read_until,
    operator_endpoint,
)

from drivers.bioreactor_opcua import OpcUaBioreactor, OpcUaSecurity
from drivers.bioreactor_security import ControllerRefusedUs
from drivers.opcua_pki import copy_into
from simulators.opcua_bioreactor import NAMESPACE_URI
from simulators.physical_state import read_state

SPEED = 60.0  # process seconds per wall second, for shuttle-sim and the daemon alike
LISTEN = "127.0.0.2"  # another loopback address: never the machine's own network
PROTOCOL = """\
shuttle_protocol: 1
name: hil-bench
version: 1.0.0
phases:
  - name: feed
    temperature: 37.0
    steps:
      - transfer: {pump: media, volume_ml: 10, rate_ml_min: 10}
      - transfer: {pump: vector, volume_ml: 2, rate_ml_min: 2}
  - name: harvest
    temperature: 37.0
    steps:
      - transfer: {pump: harvest, volume_ml: 20, rate_ml_min: 20}
"""
Pair = Callable[[str], tuple[str, str]]


@contextmanager
def bench_simulator(tmp_path: Path, *options: str) -> Iterator[Path]:
    """`shuttle-sim --print-config` with `options`; yields the configuration it printed."""
    log = tmp_path / "shuttle-sim.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [str(BIN / "shuttle-sim"), "--units", "1", "--speed", str(SPEED),
             "--state", str(tmp_path / "plant-state.json"), "--data-dir", str(tmp_path / "data"),
             "--print-config", *options],
            stdout=subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    try:
        config = tmp_path / "shuttled.toml"
        config.write_bytes(_read_until(process, CONFIG_END, START_TIMEOUT_S, log))
        yield config
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0, log.read_text()
        assert process.stdout is not None
        process.stdout.close()


@contextmanager
def serving(config: Path, tmp_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path)
    daemon.start(config)
    try:
        yield daemon
    finally:
        daemon.stop()  # SIGTERM: must exit 0 within its bound, whatever the lines did


def _wired(serial_pair: Pair) -> list[str]:
    (sim_pumps, pc_pumps), (sim_probes, pc_probes) = serial_pair("pumps"), serial_pair("probes")
    return ["--pump-port", sim_pumps, "--probe-port", sim_probes,
            "--daemon-pump-port", pc_pumps, "--daemon-probe-port", pc_probes]


class BenchOperator(Operator):
    """The service rig's operator session, also following the unit's alarms."""

    async def follow_alarms(self) -> None:
        node = await self.unit.get_child(f"{self.ns}:Alarms")
        operator = self

        class Handler:
            def datachange_notification(self, _node: object, value: object, _data: object) -> None:
                operator.seen["Alarms"] = {a["name"]: a["message"] for a in json.loads(value)}
                operator._changed.set()

        subscription = await self.client.create_subscription(20, Handler())
        await subscription.subscribe_data_change(node)


def _opened_at(port: str) -> tuple[int, bool, bool]:
    """(termios speed, odd parity, two stop bits) the daemon opened its end of a pair at: what
    a pseudo-terminal keeps of pyserial's settings. Read while the daemon holds the port."""
    fd = os.open(port, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        cflag, speed = (attrs := termios.tcgetattr(fd))[2], attrs[5]
    finally:
        os.close(fd)
    return speed, bool(cflag & termios.PARODD), bool(cflag & termios.CSTOPB)


# (shuttle-sim's line options, each bus's baud and framing in the printed configuration, what
# the daemon's pump and probe ends must show). Why these: a tick polls three pumps, 20 ms each
# at 38400 8O1 (68 ms at 9600 8E1, measured), in a wall period of 83 ms at SPEED; odd parity
# is what a pseudo-terminal keeps (even parity it drops); and a probe bus with parity cannot be
# rehearsed on one: Linux refuses (EINVAL) a pseudo-terminal setting that changes nothing it
# keeps, which is what pymodbus' second set-up of the port after opening it asks (docs/hil.md).
LINES = {
    "standard": ([], ((115200, "8N1"), (19200, "8N2")),
                 ((termios.B115200, False, False), (termios.B19200, False, True))),
    "a plant's own": (
        ["--pump-baud", "38400", "--pump-framing", "8o1", "--probe-baud", "9600",
         "--probe-framing", "8N1"],
        ((38400, "8O1"), (9600, "8N1")),
        ((termios.B38400, True, False), (termios.B9600, False, False)),
    ),
}  # fmt: skip


@pytest.mark.parametrize("lines", LINES.values(), ids=LINES.keys())
async def test_a_protocol_completes_over_serial_lines_with_exact_volumes(
    serial_pair: Pair, tmp_path: Path, lines: tuple[list[str], tuple, tuple]
) -> None:
    options, ((pump_baud, pump_framing), (probe_baud, probe_framing)), opened = lines
    with bench_simulator(tmp_path, *_wired(serial_pair), "--listen", LISTEN, *options) as config:
        text = config.read_text()
        assert f'endpoint = "opc.tcp://{LISTEN}:' in text
        assert f'port = "{tmp_path}/pc-pumps"' in text and "CHECK" not in text
        # Both ends of each wire at the settings shuttle-sim serves, as printed.
        assert (f'port = "{tmp_path}/pc-pumps"\nkind = "pumps"\nbaud = {pump_baud}\n'
                f'framing = "{pump_framing}"\n') in text
        assert (f'port = "{tmp_path}/pc-probes"\nkind = "modbus"\nbaud = {probe_baud}\n'
                f'framing = "{probe_framing}"\n') in text
        with serving(config, tmp_path):
            endpoint, credentials = operator_endpoint(config), tmp_path / "data" / "sim-credentials"
            async with Operator(endpoint, credentials) as operator:
                template, errors = await operator.call("LoadProtocol", PROTOCOL)
                assert template and not errors
                await operator.call("Start", template, "{}", "hardware-in-the-loop bench")
                await operator.wait_until(lambda seen: seen.get("State") == "COMPLETE",
                                          "COMPLETE", timeout=90)
                volume = operator.seen["Volume"]
            ends = [_opened_at(str(tmp_path / end)) for end in ("pc-pumps", "pc-probes")]
            assert ends == list(opened)
    state = read_state(tmp_path / "plant-state.json")  # what the pumps really moved
    moved = {pump: state.moved_ml("U01", pump) for pump in ("media", "vector", "harvest")}
    assert moved == pytest.approx({"media": 10.0, "vector": 2.0, "harvest": 20.0}, abs=1e-6)
    assert volume == pytest.approx(100.0 + 10.0 + 2.0 - 20.0, abs=0.05)
    assert "line settings differ" not in (tmp_path / "shuttle-sim.log").read_text()


async def test_a_daemon_configured_at_other_line_settings_gets_no_valid_reply_not_a_hang(
    serial_pair: Pair, tmp_path: Path
) -> None:
    with bench_simulator(tmp_path, *_wired(serial_pair)) as config:
        text = config.read_text()
        # The daemon's side misconfigured, as an engineer editing the file could: odd parity on
        # the pump bus (the modules are at 8N1), half the baud rate on the probe bus.
        wrong = {'framing = "8N1"': 'framing = "8O1"', "baud = 19200": "baud = 9600",
                 # Each request to a device that never answers costs the driver's timeout,
                 # retries and the stop at the end included: a shorter one keeps the test short.
                 "device_timeout_s = 1.0": "device_timeout_s = 0.25"}  # fmt: skip
        for printed, edited in wrong.items():
            assert text.count(printed) == 1, printed
            text = text.replace(printed, edited)
        config.write_text(text)
        with serving(config, tmp_path):
            credentials = tmp_path / "data" / "sim-credentials"
            async with BenchOperator(operator_endpoint(config), credentials) as operator:
                await operator.follow_alarms()
                # A run in progress, so the pumps' and probe's alarms concern it (a device an
                # idle unit does not use may have its alarms suppressed, SPEC §13).
                template, errors = await operator.call("LoadProtocol", PROTOCOL)
                assert template and not errors
                await operator.call("Start", template, "{}", "bench with wrong line settings")

                def lost_and_held(seen: Mapping[str, object]) -> bool:
                    alarms = seen.get("Alarms") or {}
                    assert isinstance(alarms, dict)
                    lost = {"PUMP_MEDIA_LOST", "PROBE_LOST"} <= alarms.keys()
                    return lost and seen.get("State") == "HELD"

                await operator.wait_until(lost_and_held, "loss alarms and a held run", timeout=60)
                alarms = operator.seen["Alarms"]
                assert isinstance(alarms, dict)
                assert "no valid reply" in alarms["PUMP_MEDIA_LOST"]
                assert "no reply" in alarms["PROBE_LOST"]
                reason = str(operator.seen["HoldReason"])  # whichever device held it first
                assert "device lost" in reason or "no valid reply" in reason, reason
    # shuttle-sim read the daemon's settings from its ends of the pairs, and played the wire.
    said = (tmp_path / "shuttle-sim.log").read_text()
    assert "line settings differ from the far end's" in said
    assert "115200 8O1" in said and "9600 8N2" in said


async def test_the_controller_on_a_listen_address_refuses_an_untrusted_client(
    tmp_path: Path,
) -> None:
    with bench_simulator(tmp_path, "--listen", LISTEN) as config:
        endpoint = next(line.split('"')[1] for line in config.read_text().splitlines()
                        if line.startswith("endpoint") and "/bioreactor" in line)
        assert endpoint.startswith(f"opc.tcp://{LISTEN}:")
        controller_pki = tmp_path / "data" / "simulated-controller-pki"
        stranger = tmp_path / "stranger"
        copy_into(controller_pki / "own" / "cert.der", stranger / "trusted")  # it trusts them
        driver = OpcUaBioreactor(endpoint, NAMESPACE_URI, {"U01": "U01"}, timeout_s=5.0,
                                 security=OpcUaSecurity(pki_dir=str(stranger)))
        try:
            with pytest.raises(ControllerRefusedUs, match="BadCertificateUntrusted"):
                await driver.read_units()
        finally:
            await driver.close()
        [kept] = (controller_pki / "rejected").iterdir()
        assert kept.read_bytes() == (stranger / "own" / "cert.der").read_bytes()
        # Served on the listen address only, not on 127.0.0.1 as well.
        on_loopback = endpoint.replace(LISTEN, "127.0.0.1")
        with pytest.raises(ConnectionRefusedError):
            await Client(on_loopback, timeout=2).connect_and_get_server_endpoints()
