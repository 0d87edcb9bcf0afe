"""Nothing in the operator address space is writable over the network.

asyncua's standard nodes (diagnostics, role configuration) are writable by default: CurrentWrite
is cleared on every node, ours and the standard ones. Setpoints change only through protocols.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from asyncua import ua
from asyncua.server.address_space import NodeData

from shuttled.operator_server.lazy_nodes import LazyNodes

_LEVELS = (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel)


def make_node_read_only(node: NodeData) -> None:
    for attribute in _LEVELS:
        value = node.attributes.get(attribute)
        if value is None or value.value is None or value.value.Value is None:
            continue
        level = value.value.Value.Value
        if isinstance(level, int) and level & ua.AccessLevel.CurrentWrite.mask:
            value.value = ua.DataValue(
                ua.Variant(level & ~ua.AccessLevel.CurrentWrite.mask, ua.VariantType.Byte)
            )


def make_read_only(nodes: MutableMapping[ua.NodeId, NodeData]) -> None:
    """Every node of the table; of a `LazyNodes` table only the live ones, because its still
    encoded nodes were made read-only before they were cached (standard_nodes.py)."""
    items: Iterable[tuple[ua.NodeId, NodeData]]
    items = nodes.live_items() if isinstance(nodes, LazyNodes) else list(nodes.items())
    for _, node in items:
        make_node_read_only(node)
