"""Independent clients against the virtual instrument: Debian's `mbpoll` and node-opcua.

Our own drivers and our own simulator could agree on a mistake (a register offset by one, a word
order, a browse name); tools written by others cannot. Both tools are installed by
`scripts/setup`; a missing tool fails these tests rather than skipping them, so CI cannot pass
without the independent checks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from drivers.opcua_pki import ensure_certificate
from simulators import plant
from simulators.instrument import VirtualInstrument

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / ".node"  # gitignored cache, filled by scripts/setup or below
NODE_PACKAGE = ROOT / "tests" / "simulators" / "node" / "package.json"
NODE_SCRIPT = ROOT / "tests" / "simulators" / "node" / "browse_bioreactor.js"


@pytest.fixture
async def instrument() -> AsyncIterator[VirtualInstrument]:
    t = [0.0]
    virtual = VirtualInstrument(2, now=lambda: t[0], seed=4)
    await virtual.start()
    t[0] = 5.0
    await virtual.advance_to(5.0)
    yield virtual
    await virtual.stop()


async def _run(*argv: str, timeout: float = 60.0) -> tuple[int, str, str]:
    """Run a tool without blocking the event loop that serves the instrument's devices."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _mbpoll() -> str:
    path = shutil.which("mbpoll")
    if path is None:
        pytest.fail("mbpoll is not installed: run scripts/setup (Debian package mbpoll)")
    return path


async def _mbpoll_read(port: str, device_id: int, kind: str, reference: int) -> str:
    code, out, err = await _run(
        _mbpoll(), "-m", "rtu", "-b", "19200", "-d", "8", "-P", "none", "-s", "2",
        "-a", str(device_id), "-t", kind, "-B", "-0", "-r", str(reference), "-c", "1",
        "-1", "-o", "2", port,
    )  # fmt: skip
    assert code == 0, out + err
    value_lines = [line for line in out.splitlines() if line.startswith(f"[{reference}]")]
    assert len(value_lines) == 1, out
    return value_lines[0].split(":", 1)[1].strip()


async def test_mbpoll_reads_the_probe_register_map_through_the_pty(
    instrument: VirtualInstrument,
) -> None:
    probe = instrument.endpoints().probes[1]  # U02, Modbus id 2
    port = probe.port
    assert await _mbpoll_read(port, probe.device_id, "4:int", 2089) == "1"  # cells/mL
    density = float(await _mbpoll_read(port, probe.device_id, "4:float", 2091))
    true_density = instrument.state[1, plant.DENSITY]
    assert 0.5 * true_density < density < 1.5 * true_density
    assert await _mbpoll_read(port, probe.device_id, "4:int", 2409) == "4"  # °C
    temperature = float(await _mbpoll_read(port, probe.device_id, "4:float", 2411))
    assert temperature == pytest.approx(instrument.state[1, plant.SENSOR_TEMPERATURE], abs=1e-4)
    assert await _mbpoll_read(port, probe.device_id, "4", 4872) == "0"  # status: all good


def _node_opcua() -> tuple[str, dict[str, str]]:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the node-opcua check: run scripts/setup")
    if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(NODE_PACKAGE, NODE_DIR / "package.json")
        result = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"npm install node-opcua failed:\n{result.stderr[-2000:]}")
    return node, {"NODE_PATH": str(NODE_DIR / "node_modules")}


NODE_CLIENT_URI = "urn:cellshuttle:tests:node-opcua"


def _node_client_certificate(pki: Path) -> tuple[Path, Path]:
    """node-opcua's certificate (PEM) and key, made here so the controller can be told to
    trust it, as an administrator would, before the client connects."""
    own = ensure_certificate(pki / "own", NODE_CLIENT_URI, "node-opcua test client", server=False)
    pem = pki / "own" / "cert.pem"
    pem.write_bytes(x509.load_der_x509_certificate(own.certificate.read_bytes())
                    .public_bytes(Encoding.PEM))
    return pem, own.private_key


async def test_node_opcua_browses_and_reads_the_simulated_bioreactor(
    instrument: VirtualInstrument, tmp_path: Path
) -> None:
    node, env = _node_opcua()
    endpoint = instrument.endpoints().opcua_endpoint
    certificate, key = _node_client_certificate(tmp_path / "node-pki")
    instrument.opcua.trust_client(tmp_path / "node-pki" / "own" / "cert.der")
    process = await asyncio.create_subprocess_exec(
        node, str(NODE_SCRIPT), endpoint, str(certificate), str(key), str(tmp_path / "node-pki"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    marked = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert len(marked) == 1, out.decode()[-3000:]
    result = json.loads(marked[0].removeprefix("RESULT "))
    assert sorted(result["units"]) == ["U01", "U02"]
    for index, unit in enumerate(("U01", "U02")):
        values = result["units"][unit]
        assert set(values) == {
            "Temperature.SensorValue",
            "Heater.Output",
            "Stirrer.CurrentValue",
            "Volume.SensorValue",
        }
        assert values["Temperature.SensorValue"] == pytest.approx(
            instrument.arrays.measured_temperature[index]
        )
        assert values["Volume.SensorValue"] == pytest.approx(100.0)
    assert result["out_of_range_write"].startswith("Bad")  # 250 % refused
    assert instrument.arrays.heater_pct[0] == 0.0
