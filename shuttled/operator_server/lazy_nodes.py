"""A node table that decodes the standard OPC UA nodes one by one, the first time each is used.

asyncua keeps every node of the address space in one dict, `AddressSpace._nodes`. Its standard
part (namespace 0, some 6000 nodes) costs over a second to build from asyncua's generated code,
and unpickling it whole still costs 0.4 s: more than a quarter of the start-up budget, for nodes
of which a running daemon touches a few hundred. Here each standard node stays a pickled byte
string until something reads it; then it is decoded once and kept as a live object, exactly what
asyncua would have held. Nodes added or replaced later (ours) are live from the start.

Iteration yields every node id, decoded or not, so asyncua's whole-table walks stay correct (and
decode everything, as they would have touched everything anyway). `live_items()` is the cheap
walk over the nodes that exist as objects: the only ones that can differ from the cache.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

from asyncua import ua
from asyncua.server.address_space import NodeData

# (NamespaceIndex, Identifier): what NodeId's __eq__ and __hash__ compare. Much cheaper to unpickle
# than NodeId itself (a frozen dataclass): 15 ms instead of 250 ms for the standard table.
EncodedKey = tuple[int, Any]


def encoded_key(nodeid: ua.NodeId) -> EncodedKey:
    return (nodeid.NamespaceIndex, nodeid.Identifier)


def encode_nodes(nodes: MutableMapping[ua.NodeId, NodeData]) -> dict[EncodedKey, bytes]:
    """Each node pickled on its own (not one pickle of the table), so each decodes on its own."""
    return {
        encoded_key(nodeid): pickle.dumps(node, pickle.HIGHEST_PROTOCOL)
        for nodeid, node in nodes.items()
    }


class LazyNodes(MutableMapping[ua.NodeId, NodeData]):
    """`AddressSpace._nodes` over pickled nodes, each decoded on first access."""

    def __init__(self, encoded: dict[EncodedKey, bytes]) -> None:
        self._encoded = encoded
        self._live: dict[ua.NodeId, NodeData] = {}
        # asyncua may run method callbacks in worker threads: one decode per node, never two
        # copies of which one would silently lose the other's changes.
        self._lock = threading.Lock()

    def __getitem__(self, nodeid: ua.NodeId) -> NodeData:
        try:
            return self._live[nodeid]
        except KeyError:
            return self._decode(nodeid)

    def get(self, nodeid: ua.NodeId, default: Any = None) -> Any:  # hot path: no exceptions
        node = self._live.get(nodeid)
        if node is not None:
            return node
        try:
            return self._decode(nodeid)
        except KeyError:
            return default

    def _decode(self, nodeid: ua.NodeId) -> NodeData:
        if not isinstance(nodeid, ua.NodeId):
            raise KeyError(nodeid)
        with self._lock:
            node = self._live.get(nodeid)
            if node is None:
                key = encoded_key(nodeid)
                node = pickle.loads(self._encoded[key])
                self._live[nodeid] = node  # live before it leaves the encoded table: never absent
                del self._encoded[key]
            return node

    def __setitem__(self, nodeid: ua.NodeId, node: NodeData) -> None:
        with self._lock:
            self._live[nodeid] = node
            self._encoded.pop(encoded_key(nodeid), None)

    def __delitem__(self, nodeid: ua.NodeId) -> None:
        with self._lock:
            found = self._live.pop(nodeid, None) is not None
            found = self._encoded.pop(encoded_key(nodeid), None) is not None or found
        if not found:
            raise KeyError(nodeid)

    def __contains__(self, nodeid: object) -> bool:
        if nodeid in self._live:
            return True
        if isinstance(nodeid, ua.NodeId) and encoded_key(nodeid) in self._encoded:
            return True
        return nodeid in self._live  # decoded by another thread between the two looks

    def __iter__(self) -> Iterator[ua.NodeId]:
        with self._lock:  # a snapshot: callers may decode (and so move) nodes while they walk
            keys = [*self._live, *(ua.NodeId(i, ns) for ns, i in self._encoded)]
        return iter(keys)

    def __len__(self) -> int:
        return len(self._live) + len(self._encoded)

    def clear(self) -> None:
        with self._lock:
            self._live.clear()
            self._encoded.clear()

    def live_items(self) -> list[tuple[ua.NodeId, NodeData]]:
        """The nodes that exist as objects; every other one is exactly as it was cached."""
        with self._lock:
            return list(self._live.items())

    def encoded_count(self) -> int:
        """How many nodes were never needed (for tests and the start-up log)."""
        return len(self._encoded)
