"""Protocol files (SPEC §3) and the run state machine (SPEC §4).

Everything other packages need is re-exported here; the submodules are implementation detail
except where a test or tool needs a specific node class.
"""

from protocols.durations import format_duration, parse_duration
from protocols.errors import ProtocolError, ProtocolInvalid
from protocols.expression_ast import (
    And,
    Arithmetic,
    Comparison,
    Expression,
    Name,
    Negate,
    Not,
    Number,
    Or,
)
from protocols.expressions import (
    SIGNALS,
    ExpressionSyntaxError,
    check_expression,
    parse_expression,
)
from protocols.loader import (
    FORMAT_VERSION,
    LIBRARY_DIR,
    load_protocol_file,
    load_protocol_text,
    validate_files,
)
from protocols.model import (
    ON_TIMEOUT_CHOICES,
    Confirm,
    DensityControl,
    Parameter,
    ParameterError,
    Phase,
    Protocol,
    Transfer,
)
from protocols.state_machine import (
    ACTIVE_STATES,
    ENDED_STATES,
    SETTLES,
    TRANSITIONS,
    Command,
    CommandRefused,
    RunState,
    allowed_commands,
    apply_command,
    complete,
    settle,
)

__all__ = [
    "ACTIVE_STATES",
    "ENDED_STATES",
    "FORMAT_VERSION",
    "LIBRARY_DIR",
    "ON_TIMEOUT_CHOICES",
    "SETTLES",
    "SIGNALS",
    "TRANSITIONS",
    "And",
    "Arithmetic",
    "Command",
    "CommandRefused",
    "Comparison",
    "Confirm",
    "DensityControl",
    "Expression",
    "ExpressionSyntaxError",
    "Name",
    "Negate",
    "Not",
    "Number",
    "Or",
    "Parameter",
    "ParameterError",
    "Phase",
    "Protocol",
    "ProtocolError",
    "ProtocolInvalid",
    "RunState",
    "Transfer",
    "allowed_commands",
    "apply_command",
    "check_expression",
    "complete",
    "format_duration",
    "load_protocol_file",
    "load_protocol_text",
    "parse_duration",
    "parse_expression",
    "settle",
    "validate_files",
]
