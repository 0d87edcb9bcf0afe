"""The daemon's view of its instrument: which device serves which unit, and the unit's limits.

`shuttled simulate` builds this from the virtual instrument's endpoints; `shuttled serve` reads
the same structure from TOML (SPEC §2, shuttled/service/config_file.py). Keeping one typed
structure means the daemon never knows which of the two it is talking to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drivers.serial_line import PROBE_LINE, PUMP_LINE, SerialLine
from shuttled.control.temperature import TemperatureGains


@dataclass(frozen=True)
class BioreactorConfig:
    endpoint: str
    namespace_uri: str
    node: str  # the unit's (vessel's) node below which the function set lives
    # Session security towards the controller (drivers/bioreactor_security.py): encrypted by
    # default; "None" only when configured explicitly, with a warning at every start.
    security_policy: str = "Basic256Sha256"  # or Aes256_Sha256_RsaPss, ..., "None"
    security_mode: str = "SignAndEncrypt"  # or Sign
    certificate: Path | None = None  # our client certificate and key; None: made on first start
    private_key: Path | None = None  # under <data_dir>/pki/controllers/own
    # The controller's certificate, pinned; None: checked against the trust list
    # <data_dir>/pki/controllers/trusted (an unknown one is refused and copied to rejected/).
    server_certificate: Path | None = None
    username: str | None = None
    password_file: Path | None = None  # first line is the password; kept out of the TOML file


@dataclass(frozen=True)
class PumpConfig:
    name: str
    port: str
    address: int
    ul_per_rev: float
    into_vessel: bool
    max_rpm: float = 300.0
    line: SerialLine = PUMP_LINE  # the bus's baud rate and framing (`[buses.<name>]`)

    @property
    def max_rate_ul_min(self) -> float:
        return self.ul_per_rev * self.max_rpm


@dataclass(frozen=True)
class ProbeConfig:
    port: str
    device_id: int
    # Density changes over hours and the bus is shared: a probe is read every this many seconds
    # (at least every control tick), staggered over the ticks so each tick reads a few probes.
    poll_period_s: float = 30.0
    line: SerialLine = PROBE_LINE  # the bus's baud rate and framing (`[buses.<name>]`)


@dataclass(frozen=True)
class UnitLimits:
    temperature_min: float = 4.0
    temperature_max: float = 40.0
    max_volume_ml: float = 1000.0


@dataclass(frozen=True)
class UnitConfig:
    unit_id: str
    bioreactor: BioreactorConfig
    pumps: dict[str, PumpConfig]
    probe: ProbeConfig
    limits: UnitLimits = field(default_factory=UnitLimits)
    temperature_gains: TemperatureGains = field(default_factory=TemperatureGains)


@dataclass(frozen=True)
class OperatorServerConfig:
    """The daemon's own OPC UA server for operators and the MES (SPEC §5)."""

    endpoint: str = "opc.tcp://0.0.0.0:4840/shuttled"
    security_policies: tuple[str, ...] = ("Basic256Sha256", "Aes256_Sha256_RsaPss")
    allow_insecure: bool = False
    allow_anonymous_read: bool = False
    users_file: Path | None = None
    trust_all_loopback_clients: bool = False
    # What a client can make the daemon hold (operator_server/limits.py): an instrument has a
    # handful of legitimate clients, and the control tick shares the event loop with them.
    max_connections: int = 32
    max_sessions: int = 32
    max_message_size: int = 4 * 1024 * 1024  # bytes; a protocol or a report piece is <= 1 MiB
    unactivated_connection_timeout_s: float = 10.0
    max_session_timeout_s: float = 600.0


@dataclass(frozen=True)
class MqttConfig:
    """Telemetry to an MQTT broker (SPEC §6); absent from DaemonConfig when not configured."""

    host: str
    port: int = 1883
    prefix: str = "shuttle"
    username: str | None = None
    password_file: Path | None = None  # first line is the password; kept out of the TOML file
    tls_ca: Path | None = None  # TLS is on when a CA is given (plant brokers use a private CA)
    tls_cert: Path | None = None  # client certificate, with tls_key, for brokers that want one
    tls_key: Path | None = None
    telemetry_period_s: float | None = None  # None: one telemetry message per control tick
    keepalive_s: int = 30  # also how long a broker waits before it sends the Last Will


@dataclass(frozen=True)
class AlarmsConfig:
    """The alarm lifecycle's settings (SPEC §13, `[alarms]`)."""

    max_shelve_s: float = 8 * 3600.0  # the longest a supervisor may shelve an alarm


@dataclass(frozen=True)
class DaemonConfig:
    instrument_id: str
    data_dir: Path
    units: list[UnitConfig]
    # None: no operator interface at all (the digital twin of `shuttlectl analyze`).
    operator: OperatorServerConfig | None = field(default_factory=OperatorServerConfig)
    control_period_s: float = 5.0
    # Process seconds per wall second: 1 on an instrument; a hardware-in-the-loop session sets
    # shuttle-sim's --speed so the daemon and the virtual plant share one time.
    clock_speed: float = 1.0
    device_loss_hold_s: float = 60.0
    device_timeout_s: float = 1.0
    mqtt: MqttConfig | None = None
    # GMP mode (SPEC §12): Start takes only approved protocols. The example service configuration
    # has it; `shuttled simulate` only with --gmp.
    gmp: bool = False
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
