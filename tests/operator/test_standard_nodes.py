"""The standard address space cache (standard_nodes.py, lazy_nodes.py): built on the first start,
read on the next, rebuilt whenever it cannot be trusted, and never a reason not to start.

Whether the lazily decoded address space serves clients like the built one is what the other
tests of this folder check: their operator server starts from the cache (conftest.py).
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.server.address_space import NodeData

from shuttled.operator_server import standard_nodes
from shuttled.operator_server.identity import OperatorInternalServer
from shuttled.operator_server.lazy_nodes import LazyNodes, encode_nodes
from shuttled.operator_server.standard_nodes import (
    MAGIC,
    CacheInvalid,
    build_standard_nodes,
    cache_file,
    read_cache,
)

SERVER_STATUS = ua.NodeId(ua.ObjectIds.Server_ServerStatus)


@pytest.fixture(scope="module")
def built() -> Iterator[OperatorInternalServer]:
    """asyncua's standard nodes built in memory (1.2 s: once for the module), read-only."""
    iserver = OperatorInternalServer()
    build_standard_nodes(iserver)
    yield iserver


@pytest.fixture(scope="module")
def valid_cache(built: OperatorInternalServer, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("cache") / "nodes.cache"
    standard_nodes.write_cache(path, encode_nodes(built.aspace._nodes))
    return path.read_bytes()


async def _start(path: Path) -> OperatorInternalServer:
    iserver = OperatorInternalServer()
    await iserver.load_standard_address_space(path)
    return iserver


def _header(data: bytes) -> dict:
    return json.loads(data[len(MAGIC) : data.index(b"\n", len(MAGIC))])


async def test_the_first_start_builds_the_cache_and_the_next_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache" / "nodes.cache"  # the directory does not exist yet
    first = await _start(path)
    assert isinstance(first.aspace._nodes, LazyNodes)
    assert len(read_cache(path)) == len(first.aspace._nodes) > 5000
    written = path.stat()

    def no_building(_: object) -> None:
        raise AssertionError("a valid cache was built again")

    monkeypatch.setattr(standard_nodes, "build_standard_nodes", no_building)
    second = await _start(path)
    nodes = second.aspace._nodes
    assert isinstance(nodes, LazyNodes)
    assert nodes[SERVER_STATUS].attributes[ua.AttributeIds.BrowseName].value.Value.Value == (
        ua.QualifiedName("ServerStatus", 0)
    )
    assert nodes.encoded_count() > len(nodes) - 50  # only what is used is decoded
    assert path.stat().st_mtime_ns == written.st_mtime_ns and path.stat().st_ino == written.st_ino


async def test_a_corrupt_cache_is_detected_and_rebuilt(tmp_path: Path, valid_cache: bytes) -> None:
    path = tmp_path / "nodes.cache"
    damaged = bytearray(valid_cache)
    damaged[len(damaged) // 2] ^= 0xFF  # one bit pattern in the middle of some node's pickle
    path.write_bytes(bytes(damaged))
    with pytest.raises(CacheInvalid, match="corrupt"):
        read_cache(path)
    iserver = await _start(path)  # starts all the same
    assert SERVER_STATUS in iserver.aspace._nodes
    assert len(read_cache(path)) == len(iserver.aspace._nodes)  # and the file is good again


def _truncated(data: bytes) -> bytes:
    return data[: len(data) - 1000]


def _other_asyncua(data: bytes) -> bytes:
    header = _header(data)
    header["identity"]["asyncua"] = "0.0.1"
    rest = data[data.index(b"\n", len(MAGIC)) :]
    return MAGIC + json.dumps(header).encode() + rest


def _valid_checksum_over_a_bad_pickle(data: bytes) -> bytes:
    import hashlib

    payload = b"\x80\x05not a pickle"
    header = _header(data)
    header.update(sha256=hashlib.sha256(payload).hexdigest(), size=len(payload))
    return MAGIC + json.dumps(header).encode() + b"\n" + payload


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda data: b"", "not a cache file"),
        (lambda data: b"garbage" * 100, "not a cache file"),
        (lambda data: MAGIC + b"{not json\n" + data, "header unreadable"),
        (_truncated, "corrupt"),
        (_other_asyncua, "made for"),
        (_valid_checksum_over_a_bad_pickle, "undecodable"),
    ],
    ids=["empty", "garbage", "bad header", "truncated", "other asyncua", "bad pickle"],
)
def test_every_kind_of_unusable_file_is_refused_with_its_reason(
    tmp_path: Path, valid_cache: bytes, damage, reason: str
) -> None:
    path = tmp_path / "nodes.cache"
    path.write_bytes(damage(valid_cache))
    with pytest.raises(CacheInvalid, match=reason):
        read_cache(path)


def test_a_missing_cache_is_just_not_there_yet(tmp_path: Path) -> None:
    with pytest.raises(CacheInvalid, match="no cache yet"):
        read_cache(tmp_path / "nodes.cache")


async def test_a_cache_that_cannot_be_written_does_not_stop_the_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    iserver = await _start(blocker / "nodes.cache")  # mkdir fails: a file is in the way
    assert SERVER_STATUS in iserver.aspace._nodes
    assert not (tmp_path / "not-a-directory").is_dir()


def test_decoded_nodes_are_the_built_ones_and_none_is_writable(
    built: OperatorInternalServer,
) -> None:
    nodes = LazyNodes(encode_nodes(built.aspace._nodes))
    assert set(nodes) == set(built.aspace._nodes)
    writable = []
    for nodeid, original in built.aspace._nodes.items():
        decoded = nodes[nodeid]
        assert decoded.nodeid == original.nodeid
        assert decoded.references == original.references
        assert {a: v.value for a, v in decoded.attributes.items()} == {
            a: v.value for a, v in original.attributes.items()
        }
        level = decoded.attributes.get(ua.AttributeIds.AccessLevel)
        if level is not None and level.value.Value.Value & ua.AccessLevel.CurrentWrite.mask:
            writable.append(nodeid)
    assert writable == []
    assert nodes.encoded_count() == 0


def _node(identifier: int | str, ns: int = 0) -> NodeData:
    return NodeData(ua.NodeId(identifier, ns))


def test_lazy_nodes_behave_as_a_dict_and_decode_each_node_once() -> None:
    encoded = {(0, i): pickle.dumps(_node(i)) for i in (1, 2, 3)}
    nodes = LazyNodes(encoded)
    assert len(nodes) == 3 and ua.NodeId(2, 0) in nodes and ua.NodeId(9, 0) not in nodes
    assert "not a node id" not in nodes and nodes.get("not a node id") is None
    first = nodes[ua.NodeId(2, 0)]
    assert nodes[ua.NodeId(2, 0, ua.NodeIdType.Numeric)] is first  # equal ids, one object
    assert nodes.get(ua.NodeId(9, 0)) is None and nodes.encoded_count() == 2
    ours = _node("CS-01", 2)
    nodes[ours.nodeid] = ours
    assert [n for n, _ in nodes.live_items()] == [ua.NodeId(2, 0), ours.nodeid]
    assert set(nodes) == {ua.NodeId(1, 0), ua.NodeId(2, 0), ua.NodeId(3, 0), ours.nodeid}
    del nodes[ua.NodeId(3, 0)]  # still encoded
    del nodes[ua.NodeId(2, 0)]  # decoded
    with pytest.raises(KeyError):
        del nodes[ua.NodeId(3, 0)]
    with pytest.raises(KeyError):
        nodes[ua.NodeId(3, 0)]
    assert len(nodes) == 2
    replaced = _node(1)
    nodes[ua.NodeId(1, 0)] = replaced  # a replaced node never comes back from the cache
    assert nodes[ua.NodeId(1, 0)] is replaced and nodes.encoded_count() == 0


def test_the_cache_lives_in_systemds_cache_directory_else_in_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    assert cache_file(tmp_path).parent == tmp_path / "cache"
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/shuttled")
    assert cache_file(tmp_path).parent == Path("/var/cache/shuttled")


def test_writing_removes_what_killed_writers_left_but_not_a_live_writers_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "nodes.cache"
    killed, working = tmp_path / ".nodes.cache.old1", tmp_path / ".nodes.cache.now2"
    killed.write_bytes(b"half a cache")
    working.write_bytes(b"being written")
    os.utime(killed, (0, 0))
    standard_nodes.write_cache(path, {(0, 1): pickle.dumps(_node(1))})
    assert not killed.exists() and working.exists()
    assert list(read_cache(path)) == [(0, 1)]
