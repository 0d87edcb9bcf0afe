"""Read protocol files (SPEC §3) into validated `Protocol` objects, or report every problem.

Only `ProtocolInvalid` leaves `load_protocol_text`, whatever the input: a protocol comes from an
operator's editor or the network (LoadProtocol) and must never crash the daemon or the CLI.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import MarkedYAMLError

from protocols._phases import PhaseReader
from protocols._schema import Checker, describe, is_number, key_at, start_of, value_at
from protocols.errors import ProtocolError, ProtocolInvalid
from protocols.expressions import KEYWORDS, SIGNALS
from protocols.model import Parameter, Phase, Protocol

__all__ = [
    "FORMAT_VERSION",
    "LIBRARY_DIR",
    "load_protocol_file",
    "load_protocol_text",
    "validate_files",
]

FORMAT_VERSION = 1
#: The protocols shipped with the package (demo.yaml, car-t-14d.yaml).
LIBRARY_DIR = Path(__file__).resolve().parent / "library"
TOP_KEYS = ("shuttle_protocol", "name", "version", "description", "parameters", "phases")
TOP_REQUIRED = ("shuttle_protocol", "name", "version", "phases")
PARAMETER_KEYS = ("default", "min", "max", "unit")
PARAMETER_REQUIRED = ("default", "min", "max")

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]*")
PARAMETER_NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
SEMVER_PATTERN = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


MAX_TEXT_CHARS = 1_000_000
MAX_FLOW_NESTING = 100


def _too_deep(text: str) -> tuple[int, int] | None:
    """Where `[`/`{` nest beyond any sane protocol, before ruamel recurses on them.

    Deep flow nesting costs the YAML parser seconds (and the stack), which LoadProtocol would
    expose to any client; brackets are counted crudely, quotes included, which only matters
    for files that are absurd anyway.
    """
    depth = 0
    line, col = 1, 0
    for char in text:
        col += 1
        if char == "\n":
            line, col = line + 1, 0
        elif char in "[{":
            depth += 1
            if depth > MAX_FLOW_NESTING:
                return line, col
        elif char in "]}" and depth:
            depth -= 1
    return None


def _parse_yaml(text: str, checker: Checker) -> object:
    """The YAML document, or None with a located syntax error recorded."""
    if len(text) > MAX_TEXT_CHARS:
        checker.error(
            (1, 1), f"the file is too large for a protocol (over {MAX_TEXT_CHARS} characters)"
        )
        return None
    if (deep := _too_deep(text)) is not None:
        checker.error(deep, f"YAML syntax error: nested deeper than {MAX_FLOW_NESTING} levels")
        return None
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        checker.error(loc, f"YAML syntax error: {problem}")
    except RecursionError:
        checker.error((1, 1), "YAML syntax error: the document is nested too deeply")
    except Exception as exc:  # ReaderError and friends carry a position, not a mark
        position = getattr(exc, "position", None)
        loc = (1, 1)
        if isinstance(position, int) and 0 <= position <= len(text):
            before = text[:position]
            line = before.count("\n") + 1
            loc = (line, position - (before.rfind("\n") + 1) + 1)
        problem = str(exc).split("\n")[0] or type(exc).__name__
        checker.error(loc, f"YAML syntax error: {problem}")
    return None


def _check_header(checker: Checker, doc: CommentedMap) -> tuple[str, str, str]:
    name = version = description = ""
    if "shuttle_protocol" in doc:
        value = doc["shuttle_protocol"]
        if not (is_number(value) and isinstance(value, int) and value == FORMAT_VERSION):
            checker.error(
                value_at(doc, "shuttle_protocol"),
                f"shuttle_protocol must be {FORMAT_VERSION} (the only format version "
                f"this software reads), not {describe(value)}",
            )
    if "name" in doc and (text := checker.text(doc, "name")) is not None:
        name = text
        if not NAME_PATTERN.fullmatch(text):
            checker.error(
                value_at(doc, "name"),
                f"invalid name {text!r}: use lower-case letters, digits and '-', "
                "starting with a letter or digit ([a-z0-9][a-z0-9-]*)",
            )
    if "version" in doc:
        value = doc["version"]
        if not (isinstance(value, str) and SEMVER_PATTERN.fullmatch(value)):
            checker.error(
                value_at(doc, "version"),
                "version must be a semantic version MAJOR.MINOR.PATCH such as '2.1.0', "
                f"not {describe(value)}",
            )
        else:
            version = str(value)
    if "description" in doc and (text := checker.text(doc, "description")) is not None:
        description = text
    return name, version, description


def _read_parameter(
    checker: Checker, name: str, body: object, loc: tuple[int, int]
) -> Parameter | None:
    spec = checker.mapping(body, loc, f"parameter '{name}'")
    if spec is None:
        return None
    context = f" in parameter '{name}'"
    checker.check_keys(spec, PARAMETER_KEYS, PARAMETER_REQUIRED, context)
    values = {key: checker.number(spec, key) for key in PARAMETER_REQUIRED if key in spec}
    unit = ""
    if "unit" in spec:
        unit = checker.text(spec, "unit") or ""
    low, high, default = values.get("min"), values.get("max"), values.get("default")
    if low is not None and high is not None and low > high:
        checker.error(value_at(spec, "min"), f"min {low:g} is greater than max {high:g}{context}")
        return None
    if default is not None and low is not None and high is not None and not low <= default <= high:
        checker.error(
            value_at(spec, "default"),
            f"default {default:g} of parameter '{name}' is outside "
            f"[min, max] = [{low:g}, {high:g}]",
        )
        return None
    if default is None or low is None or high is None:
        return None
    return Parameter(name, default, low, high, unit)


def _check_parameters(checker: Checker, doc: CommentedMap) -> tuple[dict[str, Parameter], set[str]]:
    """Parameters that validated, and every well-formed name (to avoid cascading errors)."""
    parameters: dict[str, Parameter] = {}
    names: set[str] = set()
    if "parameters" not in doc or doc["parameters"] is None:
        return parameters, names
    section = checker.mapping(doc["parameters"], value_at(doc, "parameters"), "parameters")
    if section is None:
        return parameters, names
    for key, body in section.items():
        loc = key_at(section, key)
        if not isinstance(key, str) or not PARAMETER_NAME_PATTERN.fullmatch(key):
            checker.error(
                loc,
                f"invalid parameter name {describe(key)}: use lower-case letters, digits and "
                "'_', starting with a letter or '_' ([a-z_][a-z0-9_]*)",
            )
            continue
        if key in KEYWORDS or key in SIGNALS:
            kind = "a keyword" if key in KEYWORDS else "a signal"
            checker.error(loc, f"parameter name '{key}' is {kind} of the condition language")
            continue
        names.add(key)
        parameter = _read_parameter(checker, key, body, value_at(section, key))
        if parameter is not None:
            parameters[key] = parameter
    return parameters, names


def _check_document(checker: Checker, doc: object, text: str) -> Protocol | None:
    if doc is None:
        checker.error((1, 1), "the protocol is empty: expected keys " + ", ".join(TOP_REQUIRED))
        return None
    top = checker.mapping(doc, start_of(doc), "a protocol")
    if top is None:
        return None
    checker.check_keys(top, TOP_KEYS, TOP_REQUIRED, missing_at=(1, 1))
    name, version, description = _check_header(checker, top)
    parameters, parameter_names = _check_parameters(checker, top)
    phases: list[Phase] = []
    if "phases" in top:
        phases = PhaseReader(checker, parameter_names).read_all(top, "phases")
    if checker.errors:
        return None
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return Protocol(
        name=name,
        version=version,
        description=description,
        parameters=parameters,
        phases=tuple(phases),
        text=text,
        sha256=sha256,
        identity=f"{name}@{version}#{sha256[:12]}",
    )


def load_protocol_text(text: str, filename: str = "<protocol>") -> Protocol:
    """Validate and build a protocol; raises ProtocolInvalid listing every error, sorted."""
    checker = Checker(filename, text if isinstance(text, str) else "")
    protocol: Protocol | None = None
    try:
        if not isinstance(text, str):
            checker.error((1, 1), f"a protocol must be text, not {describe(text)}")
        else:
            text.encode("utf-8")  # lone surrogates would break the identity hash
            doc = _parse_yaml(text, checker)
            if not checker.errors:
                protocol = _check_document(checker, doc, text)
    except UnicodeEncodeError:
        checker.error((1, 1), "the protocol text is not valid Unicode")
    except RecursionError:
        checker.error((1, 1), "the protocol is nested too deeply to be read")
    except Exception as exc:  # a bug here must still come out as a located error, not a crash
        checker.error((1, 1), f"internal error while validating: {type(exc).__name__}: {exc}")
    if protocol is None or checker.errors:
        if not checker.errors:
            checker.error((1, 1), "the protocol is invalid")
        raise ProtocolInvalid(sorted(checker.errors, key=lambda e: (e.line, e.col)))
    return protocol


def _read_text(path: str | os.PathLike[str]) -> str:
    """File contents as text, or ProtocolInvalid at 1:1 saying why it cannot be read."""
    filename = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        message = "file not found"
    except IsADirectoryError:
        message = "is a directory, not a protocol file"
    except PermissionError:
        message = "cannot read the file: permission denied"
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror or exc}"
    else:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at byte {exc.start})"
    raise ProtocolInvalid([ProtocolError(filename, 1, 1, message)])


def load_protocol_file(path: str | os.PathLike[str]) -> Protocol:
    """Load a protocol from disk; the identity hashes the exact file bytes (UTF-8)."""
    return load_protocol_text(_read_text(path), filename=os.fspath(path))


def validate_files(paths: Iterable[str | os.PathLike[str]]) -> list[ProtocolError]:
    """Every error of every file, for `shuttlectl validate` (empty list: all valid)."""
    errors: list[ProtocolError] = []
    for path in paths:
        try:
            load_protocol_file(path)
        except ProtocolInvalid as exc:
            errors.extend(exc.errors)
    return errors
