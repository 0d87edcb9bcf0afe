"""The TOML configuration of `shuttled serve` (SPEC §2): schema, loading and writing.

A service that starts with a half-understood configuration is worse than one that does not start:
every key is checked (unknown keys included, since a misspelt `max_volume_ml` would otherwise
silently fall back to a default), and the first problem is reported as one line naming the key,
which `shuttled serve` turns into exit 78 so systemd stops restarting it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from drivers.opcua_pki import load_der
from shuttled.config import (
    AlarmsConfig,
    BioreactorConfig,
    DaemonConfig,
    MqttConfig,
    OperatorServerConfig,
    ProbeConfig,
    PumpConfig,
    UnitConfig,
    UnitLimits,
)
from shuttled.control.temperature import TemperatureGains
from shuttled.service.bus_section import BusSection, slow_bus_problem

DEFAULT_CONFIG_PATH = Path("/etc/shuttled/shuttled.toml")


class ConfigError(Exception):
    """One line for the operator: which file, which key, what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Positive = Annotated[float, Field(gt=0)]


class OperatorSection(_Strict):
    endpoint: str = "opc.tcp://0.0.0.0:4840/shuttled"
    security_policies: list[Literal["Basic256Sha256", "Aes256_Sha256_RsaPss"]] = [
        "Basic256Sha256",
        "Aes256_Sha256_RsaPss",
    ]
    allow_insecure: bool = False
    allow_anonymous_read: bool = False
    users_file: Path | None = None
    trust_all_loopback_clients: bool = False
    max_connections: int = Field(default=32, ge=1, le=1000)
    max_sessions: int = Field(default=32, ge=1, le=1000)
    max_message_size: int = Field(default=4 * 1024 * 1024, ge=2 * 1024 * 1024, le=64 * 1024 * 1024)
    unactivated_connection_timeout_s: float = Field(default=10.0, gt=0, le=300)
    max_session_timeout_s: float = Field(default=600.0, ge=10, le=86400)


def _existing_file(path: Path | None) -> Path | None:
    """Secrets and certificates are read at connect time; a wrong path must fail at start-up
    (exit 78), not hours later as a silent telemetry outage."""
    if path is not None and not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


ExistingFile = Annotated[Path | None, AfterValidator(_existing_file)]


class MqttSection(_Strict):
    """Telemetry to an MQTT broker (SPEC §6)."""

    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    prefix: str = Field(default="shuttle", pattern=r"^[^#+/][^#+]*[^#+/]$|^[^#+/]$")
    username: str | None = None
    password_file: ExistingFile = None
    tls_ca: ExistingFile = None
    tls_cert: ExistingFile = None
    tls_key: ExistingFile = None
    telemetry_period_s: float | None = Field(default=None, gt=0)
    keepalive_s: int = Field(default=30, ge=5, le=600)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSection:
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs a username")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_cert is not None and self.tls_ca is None:
            raise ValueError("a client certificate needs tls_ca (TLS is on only with a CA)")
        return self


def _certificate_file(path: Path | None) -> Path | None:
    """A certificate that is not one would fail at every connect; say so at start-up."""
    if path is None or _existing_file(path) is None:
        return path
    try:
        der = load_der(path)
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    if der is None:
        raise ValueError(f"{path} is not a certificate (DER or PEM)")
    return path


CertificateFile = Annotated[Path | None, AfterValidator(_certificate_file)]


class BioreactorSection(_Strict):
    """The link to a bioreactor controller: encrypted unless `security_policy = "None"`; the
    client certificate is made under <data_dir>/pki/controllers/own unless one is given."""

    endpoint: str = Field(pattern=r"^opc\.tcp://")
    namespace_uri: str
    security_policy: Literal[
        "Basic256Sha256", "Aes256_Sha256_RsaPss", "Aes128_Sha256_RsaOaep", "None",
        "Aes256Sha256RsaPss", "Aes128Sha256RsaOaep",  # asyncua's spelling, of older files
    ] = "Basic256Sha256"
    security_mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: CertificateFile = None
    private_key: ExistingFile = None
    server_certificate: CertificateFile = None
    username: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BioreactorSection:
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        given = [k for k in ("certificate", "private_key", "server_certificate")
                 if getattr(self, k) is not None]
        if self.security_policy == "None" and given:
            raise ValueError(f'security_policy "None" uses no certificates: remove '
                             f'{" and ".join(given)}, or choose a security policy')
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self


class PumpSection(_Strict):
    bus: str
    address: int = Field(ge=1, le=32)
    ul_per_rev: Positive
    direction: Literal["in", "out"]
    max_rpm: float = Field(default=300.0, gt=0, le=300.0)


class ProbeSection(_Strict):
    bus: str
    device_id: int = Field(ge=1, le=247)
    kind: Literal["density"] = "density"
    poll_period_s: float = Field(default=30.0, gt=0, le=600.0)


class LimitsSection(_Strict):
    temperature_min: float = Field(default=4.0, ge=4.0, le=42.0)
    temperature_max: float = Field(default=40.0, ge=4.0, le=42.0)
    max_volume_ml: Positive = 1000.0

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSection:
        if self.temperature_min >= self.temperature_max:
            raise ValueError("temperature_min must be below temperature_max")
        return self


class AlarmsSection(_Strict):
    """The alarm lifecycle (SPEC §13): a shelve longer than this is refused."""

    max_shelve_s: float = Field(default=8 * 3600.0, gt=0, le=30 * 86400.0)


class ThermalModelSection(_Strict):
    """The controller's model of the unit, used for feed-forward (not the plant itself)."""

    heater_w: Positive = 15.0
    ua_w_per_k: Positive = 0.6
    ambient_c: float = 22.0


class UnitSection(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    bioreactor: str
    node: str
    pumps: dict[str, PumpSection]
    probe: ProbeSection
    limits: LimitsSection = LimitsSection()
    thermal_model: ThermalModelSection = ThermalModelSection()


class ConfigFile(_Strict):
    instrument_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    data_dir: Path = Path("/var/lib/shuttled")
    control_period_s: float = Field(default=5.0, gt=0, le=60.0)
    clock_speed: float = Field(default=1.0, gt=0, le=10000.0)
    device_loss_hold_s: float = Field(default=60.0, ge=0)
    device_timeout_s: float = Field(default=1.0, gt=0, le=30.0)
    # GMP mode (SPEC §12): Start takes only approved protocols.
    gmp: bool = False
    opcua: OperatorSection = OperatorSection()
    mqtt: MqttSection | None = None
    alarms: AlarmsSection = AlarmsSection()
    bioreactors: dict[str, BioreactorSection]
    buses: dict[str, BusSection]
    units: list[UnitSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _references_resolve(self) -> ConfigFile:
        ids = [u.id for u in self.units]
        for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"unit id {duplicate!r} is used twice")
        used: dict[tuple[str, int], str] = {}
        for index, unit in enumerate(self.units):
            where = f"units[{index}] ({unit.id})"
            if unit.bioreactor not in self.bioreactors:
                raise ValueError(f"{where}.bioreactor: no [bioreactors.{unit.bioreactor}] section")
            for name, pump in unit.pumps.items():
                self._check_bus(f"{where}.pumps.{name}.bus", pump.bus, "pumps")
                key = (pump.bus, pump.address)
                if key in used:
                    raise ValueError(
                        f"{where}.pumps.{name}.address: {pump.address} on bus {pump.bus!r} is "
                        f"already {used[key]}"
                    )
                used[key] = f"{unit.id}.{name}"
            self._check_bus(f"{where}.probe.bus", unit.probe.bus, "modbus")
        return self

    @model_validator(mode="after")
    def _replies_fit_the_timeout(self) -> ConfigFile:
        """A bus so slow that a reply cannot cross the wire within device_timeout_s would look
        like a dead bus at every request: say so at start-up instead."""
        problem = slow_bus_problem(self.buses, self.device_timeout_s)
        if problem is not None:
            raise ValueError(problem)
        return self

    def _check_bus(self, where: str, bus: str, kind: str) -> None:
        section = self.buses.get(bus)
        if section is None:
            raise ValueError(f"{where}: no [buses.{bus}] section")
        if section.kind != kind:
            raise ValueError(f"{where}: bus {bus!r} is a {section.kind} bus, not {kind}")

    def to_daemon_config(self) -> DaemonConfig:
        units = []
        for unit in self.units:
            controller = self.bioreactors[unit.bioreactor]
            units.append(
                UnitConfig(
                    unit_id=unit.id,
                    bioreactor=BioreactorConfig(
                        controller.endpoint,
                        controller.namespace_uri,
                        unit.node,
                        **controller.model_dump(exclude={"endpoint", "namespace_uri"}),
                    ),
                    pumps={
                        name: PumpConfig(
                            name, self.buses[p.bus].port, p.address, p.ul_per_rev,
                            p.direction == "in", p.max_rpm, self.buses[p.bus].line,
                        )
                        for name, p in unit.pumps.items()
                    },
                    probe=ProbeConfig(
                        self.buses[unit.probe.bus].port,
                        unit.probe.device_id,
                        unit.probe.poll_period_s,
                        self.buses[unit.probe.bus].line,
                    ),
                    limits=UnitLimits(**unit.limits.model_dump()),
                    temperature_gains=TemperatureGains(**unit.thermal_model.model_dump()),
                )
            )
        operator = self.opcua
        return DaemonConfig(
            instrument_id=self.instrument_id,
            data_dir=self.data_dir,
            units=units,
            # The section's keys are the configuration's fields, one to one.
            operator=OperatorServerConfig(
                **operator.model_dump() | {"security_policies": tuple(operator.security_policies)}
            ),
            control_period_s=self.control_period_s,
            clock_speed=self.clock_speed,
            device_loss_hold_s=self.device_loss_hold_s,
            device_timeout_s=self.device_timeout_s,
            mqtt=MqttConfig(**self.mqtt.model_dump()) if self.mqtt is not None else None,
            gmp=self.gmp,
            alarms=AlarmsConfig(**self.alarms.model_dump()),
        )


def _key_path(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def load_config(path: Path) -> DaemonConfig:
    """Read and check a configuration file; ConfigError with one clear line otherwise."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: TOML syntax error: {error}") from None
    try:
        return ConfigFile.model_validate(data).to_daemon_config()
    except ValidationError as error:
        first = error.errors()[0]
        key = _key_path(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        if first["type"] == "missing":
            message = "required key is missing"
        more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
        raise ConfigError(f"{path}: {key + ': ' if key else ''}{message}{more}") from None


def render_config(config: ConfigFile) -> str:
    """The TOML text of a configuration, as `shuttled serve --config` reads it back."""
    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))
