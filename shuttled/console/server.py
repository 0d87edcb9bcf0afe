"""Serving the console: where it listens, TLS, and its life beside a simulation or alone.

uvicorn because it is the maintained reference ASGI server, small, and runs inside an event loop
we already have (`shuttled simulate --console` serves it on the simulation's loop, as one more
task). Without TLS the console listens on loopback only: a signing action sends the signer's
password to the console, and it must not cross a network in clear text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn

from drivers.opcua_pki import ensure_certificate
from shuttled.console.app import build_app
from shuttled.console.sessions import DEFAULT_IDLE_LOCK_S

log = structlog.get_logger("shuttled.console")

DEFAULT_LISTEN = "127.0.0.1:8080"  # SPEC §14


class ConsoleRefused(Exception):
    """The console cannot start as asked (one sentence for the person who started it)."""


@dataclass(frozen=True)
class ConsoleOptions:
    endpoint: str
    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    idle_lock_s: float = DEFAULT_IDLE_LOCK_S
    pki_dir: Path | None = None  # the console's OPC UA client certificate

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"


def default_pki_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shuttled-console" / "pki"


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:8080` for IPv6); ValueError with the reason."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ConsoleOptions) -> None:
    """Refuse what would be unsafe or cannot work, before anything listens."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise ConsoleRefused("give both --tls-cert and --tls-key, or neither")
    if options.tls_cert is None and not is_loopback(options.host):
        raise ConsoleRefused(
            f"refusing to listen on {options.host} without TLS: passwords would cross the "
            "network in clear text. Give --tls-cert F --tls-key F, or listen on 127.0.0.1")
    for path in (options.tls_cert, options.tls_key):
        if path is not None and not path.is_file():
            raise ConsoleRefused(f"cannot read {path}")
    if options.idle_lock_s <= 0:
        raise ConsoleRefused("--idle-lock-s must be positive")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers when it shares a loop with the simulation,
    which handles SIGINT and SIGTERM itself."""

    def __init__(self, config: uvicorn.Config, own_signals: bool) -> None:
        super().__init__(config)
        self.own_signals = own_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self.own_signals:
            with super().capture_signals():
                yield
        else:
            yield


class ConsoleServer:
    """The console serving on the running event loop until `stop()`."""

    def __init__(self, options: ConsoleOptions, own_signals: bool = False) -> None:
        check_options(options)
        self.options = options
        pki_dir = options.pki_dir or default_pki_dir()
        self.app = build_app(options.endpoint, pki_dir, options.idle_lock_s,
                             secure_cookie=options.tls_cert is not None)
        self._pki_dir = pki_dir
        config = uvicorn.Config(
            self.app, host=options.host, port=options.port, log_config=None,
            access_log=False, lifespan="on", timeout_graceful_shutdown=2,
            ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
            ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        )
        self.server = _Server(config, own_signals)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.options.url

    async def _prepare(self) -> None:
        """The client certificate, made once now (RSA key generation) and not at sign-in."""
        uri = f"urn:cellshuttle:console:{socket.gethostname()}"
        await asyncio.to_thread(ensure_certificate, self._pki_dir, uri, "shuttled console",
                                False)

    async def start(self) -> None:
        """Listen, and return once the socket is bound (ConsoleRefused if it cannot be)."""
        await self._prepare()
        family = socket.AF_INET6 if ":" in self.options.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:  # bound here, so a taken port is our one sentence and not uvicorn's sys.exit
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.options.host, self.options.port))
        except OSError as error:
            sock.close()
            raise ConsoleRefused(f"the console cannot listen on {self.options.host}:"
                                 f"{self.options.port}: {error.strerror}") from None
        sock.set_inheritable(True)
        self._task = asyncio.get_running_loop().create_task(self.server.serve([sock]))
        while not self.server.started:
            if self._task.done():
                raise ConsoleRefused("the console stopped while starting (see its log)")
            await asyncio.sleep(0.02)
        log.info("console listening", url=self.url, endpoint=self.options.endpoint)

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)

    async def wait(self) -> None:
        """Until the server stops (its own signal handlers, or `stop()`)."""
        if self._task is not None:
            await self._task


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
