"""The console's pieces without a browser: what it refuses to start with, how it reads the
daemon's located errors, and the contract it repeats instead of importing the daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from shuttled.client.opcua import NAMESPACE_URI
from shuttled.console.pages_protocols import _located
from shuttled.console.server import ConsoleOptions, ConsoleRefused, check_options, parse_listen
from shuttled.operator_server.address_space import NAMESPACE_URI as DAEMONS_NAMESPACE


def test_the_client_speaks_the_daemons_namespace() -> None:
    assert NAMESPACE_URI == DAEMONS_NAMESPACE  # SPEC §5; shuttled.client may not import it


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:9000", ("::1", 9000)),
    ("localhost:1", ("localhost", 1))])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", ":80", "h:99999", "h:x"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(text)


def test_plain_http_only_on_loopback(tmp_path: Path) -> None:
    check_options(ConsoleOptions("opc.tcp://x", host="127.0.0.1"))
    check_options(ConsoleOptions("opc.tcp://x", host="::1"))
    with pytest.raises(ConsoleRefused, match=r"refusing to listen on 10\.0\.0\.5 without TLS"):
        check_options(ConsoleOptions("opc.tcp://x", host="10.0.0.5"))
    with pytest.raises(ConsoleRefused, match="both --tls-cert and --tls-key"):
        check_options(ConsoleOptions("opc.tcp://x", host="10.0.0.5", tls_cert=tmp_path / "c"))
    with pytest.raises(ConsoleRefused, match="cannot read"):
        check_options(ConsoleOptions("opc.tcp://x", host="10.0.0.5", tls_cert=tmp_path / "c",
                                     tls_key=tmp_path / "k"))


def test_located_errors_point_at_their_line() -> None:
    source = "a: 1\nphases:\n  - duraton: 1h\n"
    errors = "3:5: unknown key 'duraton'\n1:1: something general"
    assert _located(errors, source) == [
        {"line": 3, "column": "5", "message": "unknown key 'duraton'",
         "source": "  - duraton: 1h"},
        {"line": 1, "column": "1", "message": "something general", "source": "a: 1"}]
