"""The OPC UA operator interface of SPEC §5 (LADS-shaped address space, methods, security)."""

from shuttled.operator_server.server import OperatorServer, OperatorServerError

__all__ = ["OperatorServer", "OperatorServerError"]
