"""The address space of SPEC §5, shaped after OPC UA LADS (OPC 30500).

Browse names are in `urn:cellshuttle:shuttled`. Node ids are strings that spell the browse path
(`CS-01.U01.FunctionSet.Temperature.CurrentValue`), so an MES engineer can also address a value
directly, and they do not change between daemon restarts.

Every variable is created read-only (AccessLevel CurrentRead): setpoints change only through
protocols. Values are filled in by `mirror.Mirror`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from asyncua import Node, Server, ua

from protocols.model import Protocol
from shuttled import __version__

NAMESPACE_URI = "urn:cellshuttle:shuttled"

STRING, DOUBLE = ua.VariantType.String, ua.VariantType.Double

# (name, type) of every method's arguments (SPEC §5); the handlers rely on this order.
METHOD_SIGNATURES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "LoadProtocol": ([("ProtocolText", "the protocol file's text (YAML)")],
                     [("TemplateId", "identity of the loaded protocol; empty if refused"),
                      ("Errors", "LINE:COL: message, one per line; empty if loaded")]),
    "Start": ([("TemplateId", "a loaded protocol's id; empty: the one loaded last"),
               ("Parameters", "JSON object of parameter overrides, e.g. {\"target_cells\": 2e9}"),
               ("Reason", "why (audit trail); required"),
               ("BatchId", "the patient's chain-of-identity id (1-64 printable characters, "
                "e.g. an ISBT 128 DIN); required in GMP mode, optional otherwise (SPEC §12)"),
               ("CartridgeId", "the id of the cartridge installed in the unit, checked against "
                "the controller's; required in GMP mode"),
               ("Signature", 'JSON {"meaning": "performed", "password": …, "comment": …}; '
                "required in GMP mode")],
              [("RunId", "id of the new run")]),
    **{
        name: ([("Reason", "why (audit trail); required")], [])
        for name in ("Hold", "Restart", "Stop", "Abort", "Reset")
    },
    "Abort": ([("Reason", "why (audit trail); required"),
               ("Signature", 'JSON {"meaning": "performed", "password": …, "comment": …}; '
                "required in GMP mode (SPEC §12)")], []),
}
# Trailing inputs a client may leave out (SPEC §12: Start and Abort stay callable as in §5
# outside GMP mode); the handler receives them as empty strings.
OPTIONAL_TRAILING_INPUTS = {"Start": 3, "Abort": 1}

_TEMPLATE = ("TemplateId", "the protocol's identity name@version#sha12")
_SIGNATURE = ("Signature", 'JSON {"meaning": …, "password": …, "comment": …} (SPEC §12); '
              "the password is the signer's own, checked now and never recorded")
_STATE = ("State", "the protocol's lifecycle state afterwards")
# Operator steps, on the unit object (SPEC §12 "Operator steps"; step_methods.py).
METHOD_SIGNATURES.update({
    "Confirm": ([("Values", 'JSON object, a value for every name the step records, e.g. '
                  '{"lot": "ML-123"}; {} when it records none'), _SIGNATURE],
                [("Status", "what the step waits for now: 'verify' or 'done'")]),
    "Verify": ([_SIGNATURE], [("Status", "'done'")]),
})
# Methods of DeviceSet/<instrument>/Protocols and .../Users (SPEC §12; protocol_methods.py).
INSTRUMENT_METHOD_SIGNATURES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "ListProtocols": ([], [("Protocols", "JSON array: identity, state, history, signatures")]),
    "ShowProtocol": ([_TEMPLATE], [("Protocol", "JSON: text, state, history, signatures")]),
    "SubmitProtocol": ([_TEMPLATE, _SIGNATURE], [_STATE]),
    "ApproveProtocol": ([_TEMPLATE, _SIGNATURE], [_STATE]),
    "RetireProtocol": ([_TEMPLATE, ("Reason", "why (audit trail); required"), _SIGNATURE],
                       [_STATE]),
    "ExportProtocol": ([_TEMPLATE], [("Package", "the signed tech-transfer package (JSON)")]),
    "ImportProtocol": ([("Package", "a .shuttlepkg file's text"),
                        ("TrustedKey", "the sending instrument's public key (PEM); empty: the "
                         "keys in <data_dir>/trusted-sites/")],
                       [("TemplateId", "identity of the imported protocol, now a draft here")]),
    "UnlockUser": ([("UserName", "the locked account"), ("Reason", "why (audit trail)")], []),
    # Who the session is (the operator console shows only what this role may call; the
    # daemon still checks every call): JSON {"user", "role", "full_name", "may": [methods]}.
    "WhoAmI": ([], [("Identity", "JSON: user, role, full_name, may (the methods this role "
                    "may call)")]),
    # DeviceSet/<instrument>/Records (SPEC §12; record_methods.py): the batch record
    "ReadRecord": ([("RunId", "the run (DeviceProgramRunId)"), ("Format", "json, html or pdf")],
                   [("Record", "the batch record in that format")]),
    "ReviewRecord": ([("RunId", "the run"), _SIGNATURE], [("Status", "reviewed")]),
    "ReleaseRecord": ([("RunId", "the run"), _SIGNATURE], [("Status", "released")]),
}


def _argument(name: str, description: str) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(ua.ObjectIds.String)
    argument.ValueRank = -1
    argument.ArrayDimensions = []
    argument.Description = ua.LocalizedText(description)
    return argument


@dataclass
class UnitNodes:
    """Node ids of one functional unit's variables and containers."""

    unit_id: str
    object: Node
    variables: dict[str, ua.NodeId] = field(default_factory=dict)
    pumps: list[str] = field(default_factory=list)
    template_set: Node | None = None
    result_set: Node | None = None
    templates: set[str] = field(default_factory=set)
    results: set[str] = field(default_factory=set)


class AddressSpaceBuilder:
    def __init__(self, server: Server, ns: int, instrument_id: str) -> None:
        self.server = server
        self.ns = ns
        self.instrument_id = instrument_id

    def _id(self, *path: str) -> ua.NodeId:
        return ua.NodeId(".".join(path), self.ns)

    def _name(self, name: str) -> ua.QualifiedName:
        return ua.QualifiedName(name, self.ns)

    async def _object(self, parent: Node, path: tuple[str, ...], name: str) -> Node:
        return await parent.add_object(self._id(*path, name), self._name(name))

    async def _variable(
        self, parent: Node, path: tuple[str, ...], name: str, value: object, kind: ua.VariantType
    ) -> ua.NodeId:
        node = await parent.add_variable(
            self._id(*path, name), self._name(name), ua.Variant(value, kind)
        )
        return node.nodeid

    async def build_device(self) -> tuple[Node, ua.NodeId, Node]:
        """DeviceSet/<instrument> with Identification and DeviceHealth; returns the device,
        the DeviceHealth node id and the FunctionalUnitSet."""
        device_set = await self.server.nodes.objects.add_object(
            ua.NodeId("DeviceSet", self.ns), self._name("DeviceSet")
        )
        base = (self.instrument_id,)
        device = await device_set.add_object(self._id(*base), self._name(self.instrument_id))
        identification = await self._object(device, base, "Identification")
        for name, value in (
            ("Manufacturer", "Cell Shuttle"),
            ("Model", "Cell Shuttle CAR-T"),
            ("SerialNumber", self.instrument_id),
            ("SoftwareRevision", f"shuttled {__version__}"),
        ):
            await self._variable(identification, (*base, "Identification"), name, value, STRING)
        health = await self._variable(device, base, "DeviceHealth", "NORMAL", STRING)
        unit_set = await self._object(device, base, "FunctionalUnitSet")
        return device, health, unit_set

    async def build_unit(
        self, unit_set: Node, unit_id: str, pumps: list[str], method_handler: object
    ) -> UnitNodes:
        base = (self.instrument_id, unit_id)
        unit = await unit_set.add_object(self._id(*base), self._name(unit_id))
        nodes = UnitNodes(unit_id, unit, pumps=list(pumps))
        v = nodes.variables
        v["State"] = await self._variable(unit, base, "State", "IDLE", STRING)
        v["HoldReason"] = await self._variable(unit, base, "HoldReason", "", STRING)
        v["Alarms"] = await self._variable(unit, base, "Alarms", "[]", STRING)
        fs_path = (*base, "FunctionSet")
        function_set = await self._object(unit, base, "FunctionSet")
        groups = {
            "Temperature": ("CurrentValue", "TargetValue", "ControllerOutput"),
            "CellDensity": ("SensorValue", "GrowthRate"),
            "Volume": ("CurrentValue",),
        }
        for pump in pumps:
            groups[pump] = ("FlowRate", "TotalizedValue")
        for group, names in groups.items():
            folder = await self._object(function_set, fs_path, group)
            for name in names:
                v[f"{group}.{name}"] = await self._variable(
                    folder, (*fs_path, group), name, float("nan"), DOUBLE
                )
        pm_path = (*base, "ProgramManager")
        manager = await self._object(unit, base, "ProgramManager")
        active = await self._object(manager, pm_path, "ActiveProgram")
        for name in ("ProgramTemplateId", "CurrentStepName", "DeviceProgramRunId", "BatchId",
                     "CartridgeId"):
            v[f"ActiveProgram.{name}"] = await self._variable(
                active, (*pm_path, "ActiveProgram"), name, "", STRING
            )
        for name in ("CurrentRuntime", "EstimatedRemaining"):
            v[f"ActiveProgram.{name}"] = await self._variable(
                active, (*pm_path, "ActiveProgram"), name, 0.0, DOUBLE
            )
        nodes.template_set = await self._object(manager, pm_path, "ProgramTemplateSet")
        nodes.result_set = await self._object(manager, pm_path, "ResultSet")
        for method, (inputs, outputs) in METHOD_SIGNATURES.items():
            callback = getattr(method_handler, f"on_{method}")
            await unit.add_method(
                self._id(*base, method),
                self._name(method),
                callback,
                [_argument(n, d) for n, d in inputs],
                [_argument(n, d) for n, d in outputs],
            )
        return nodes

    async def add_template(self, nodes: UnitNodes, protocol: Protocol, loaded_by: str) -> None:
        """One object per loaded protocol (LADS ProgramTemplate); idempotent."""
        if protocol.identity in nodes.templates or nodes.template_set is None:
            return
        nodes.templates.add(protocol.identity)
        path = (self.instrument_id, nodes.unit_id, "Template", protocol.identity)
        template = await nodes.template_set.add_object(
            self._id(*path), self._name(protocol.identity)
        )
        parameters = {
            name: {"default": p.default, "min": p.min, "max": p.max, "unit": p.unit}
            for name, p in protocol.parameters.items()
        }
        for name, value in (
            ("Name", protocol.name),
            ("Version", protocol.version),
            ("Description", protocol.description),
            ("Sha256", protocol.sha256),
            ("Phases", ", ".join(p.name for p in protocol.phases)),
            ("Parameters", json.dumps(parameters, sort_keys=True)),
            ("LoadedBy", loaded_by),
        ):
            await template.add_property(self._id(*path, name), self._name(name),
                                        ua.Variant(value, STRING))

    async def add_result(self, nodes: UnitNodes, run_id: str, values: dict[str, object]) -> None:
        """One object per ended run (LADS Result); idempotent."""
        if run_id in nodes.results or nodes.result_set is None:
            return
        nodes.results.add(run_id)
        path = (self.instrument_id, nodes.unit_id, "Result", run_id)
        result = await nodes.result_set.add_object(self._id(*path), self._name(run_id))
        for name, value in values.items():
            kind = DOUBLE if isinstance(value, float) else STRING
            await result.add_property(self._id(*path, name), self._name(name),
                                      ua.Variant(value, kind))
