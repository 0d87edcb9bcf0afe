"""Interoperability: node-opcua (an independent OPC UA stack) operates the daemon (SPEC §5).

node-opcua is installed by scripts/setup into tests/.node (shared with the simulator's check);
if it is missing, it is installed here, and a missing node/npm is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from operator_rig import ACCOUNTS, DEMO, INSTRUMENT, make_daemon

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / ".node"
NODE_PACKAGE = ROOT / "tests" / "simulators" / "node" / "package.json"
SCRIPT = Path(__file__).parent / "node" / "operator_session.js"


def _node_opcua() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the node-opcua check: run scripts/setup")
    if not (NODE_DIR / "node_modules" / "node-opcua").is_dir():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy(NODE_PACKAGE, NODE_DIR / "package.json")
        result = subprocess.run(
            [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"npm install node-opcua failed:\n{result.stderr[-2000:]}")
    return node


async def run_node_script(node: str, script: Path, tmp_path: Path, *args: str) -> dict:
    """Run one of node/*.js; its one `RESULT {json}` line, parsed."""
    process = await asyncio.create_subprocess_exec(
        node, str(script), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"NODE_PATH": str(NODE_DIR / "node_modules"), "PATH": "/usr/bin:/bin",
             "HOME": str(tmp_path)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, err.decode()[-3000:]
    marked = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert len(marked) == 1, out.decode()[-3000:]
    return json.loads(marked[0].removeprefix("RESULT "))


async def test_node_opcua_signs_in_securely_loads_starts_and_reads_state(tmp_path: Path) -> None:
    node = _node_opcua()
    daemon = await make_daemon(tmp_path, allow_insecure=False)
    try:
        result = await run_node_script(
            node, SCRIPT, tmp_path, daemon.endpoint, str(tmp_path / "node-pki"), str(DEMO),
            "otto", ACCOUNTS["otto"][1], "vera", ACCOUNTS["vera"][1],
        )
    finally:
        await daemon.server.stop()
    assert result["security"].endswith("Basic256Sha256")
    assert result["instrument"] == INSTRUMENT and result["units"] == ["U01", "U02"]
    assert result["functions"] == ["CellDensity", "Temperature", "Volume", "harvest", "media",
                                   "vector"]
    assert result["load"]["status"] == "Good"
    assert result["load"]["outputs"][0].startswith("demo@1.0.0#")
    assert result["start"] == {"status": "Good", "outputs": [f"{INSTRUMENT}-U01-0001"]}
    assert result["state"] == "RUNNING"
    assert result["empty_reason"] == "BadInvalidArgument"
    assert result["write"].startswith("Bad")
    assert result["viewer_hold"] == "BadUserAccessDenied"
    assert result["wrong_password"] == "refused"
    assert result["anonymous"] in ("refused", "not offered")  # the endpoints offer no anonymous
