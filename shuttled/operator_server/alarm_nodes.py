"""One alarm as an OPC UA condition (SPEC §13): its node, its event, its state variables.

asyncua can instantiate AlarmConditionType, but it copies every optional child of the type (66
nodes, Confirm, Silence, Suppress, Reset… methods we would then have to refuse) and takes
about 65 ms per instance. A condition here is a compact instance instead: an object whose type
definition is AlarmConditionType with the children a standard Alarms & Conditions client reads
(the two-state variables with their Id, Retain, Comment, ShelvingState with CurrentState and
UnshelveTime), made in one AddNodes call. Its methods are the type's (Acknowledge i=9111,
ShelvedStateMachineType's TimedShelve i=2949…), which Part 9 has clients call with the
condition (or its ShelvingState) as the object; the handlers are in alarm_conditions.py.

asyncua's AlarmCondition event class has no ShelvingState fields and declares some types as
node ids (UtcTime, Duration) that a Variant cannot take; both are fixed on each event here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common import event_objects

from shuttled.alarms.model import Alarm, Transition

V = ua.VariantType
O = ua.ObjectIds  # noqa: E741
_TYPES = {V.Boolean: 1, V.UInt16: 5, V.Double: 290, V.String: 12, V.ByteString: 15,
          V.NodeId: 17, V.StatusCode: 19, V.LocalizedText: 21}  # fmt: skip
SHELVING_STATES = {
    "": ("Unshelved", O.ShelvedStateMachineType_Unshelved),
    "timed": ("TimedShelved", O.ShelvedStateMachineType_TimedShelved),
    "oneshot": ("OneShotShelved", O.ShelvedStateMachineType_OneShotShelved),
}
TWO_STATES = {  # variable: (true text, false text)
    "EnabledState": ("Enabled", "Disabled"),
    "ActiveState": ("Active", "Inactive"),
    "AckedState": ("Acknowledged", "Unacknowledged"),
    "SuppressedState": ("Suppressed", "Unsuppressed"),
}
# (path, reference, type definition, variant type): the condition's children.
_CHILDREN: list[tuple[str, int, int, ua.VariantType]] = [
    ("EventId", O.HasProperty, O.PropertyType, V.ByteString),
    ("EventType", O.HasProperty, O.PropertyType, V.NodeId),
    ("SourceNode", O.HasProperty, O.PropertyType, V.NodeId),
    ("SourceName", O.HasProperty, O.PropertyType, V.String),
    ("Message", O.HasProperty, O.PropertyType, V.LocalizedText),
    ("Severity", O.HasProperty, O.PropertyType, V.UInt16),
    ("ConditionName", O.HasProperty, O.PropertyType, V.String),
    ("Retain", O.HasProperty, O.PropertyType, V.Boolean),
    ("ClientUserId", O.HasProperty, O.PropertyType, V.String),
    ("SuppressedOrShelved", O.HasProperty, O.PropertyType, V.Boolean),
    ("MaxTimeShelved", O.HasProperty, O.PropertyType, V.Double),
    ("Comment", O.HasComponent, O.ConditionVariableType, V.LocalizedText),
    ("LastSeverity", O.HasComponent, O.ConditionVariableType, V.UInt16),
    *[(name, O.HasComponent, O.TwoStateVariableType, V.LocalizedText) for name in TWO_STATES],
    *[(f"{name}/Id", O.HasProperty, O.PropertyType, V.Boolean) for name in TWO_STATES],
    ("ShelvingState/CurrentState", O.HasComponent, O.FiniteStateVariableType, V.LocalizedText),
    ("ShelvingState/CurrentState/Id", O.HasProperty, O.PropertyType, V.NodeId),
    ("ShelvingState/UnshelveTime", O.HasProperty, O.PropertyType, V.Double),
]


def condition_id(ns: int, instrument: str, unit: str, name: str) -> ua.NodeId:
    """Stable across restarts, as clients keep ConditionIds (`CS-01.U01.Conditions.X`)."""
    return ua.NodeId(f"{instrument}.{unit}.Conditions.{name}", ns)


def child_id(condition: ua.NodeId, path: str) -> ua.NodeId:
    return ua.NodeId(f"{condition.Identifier}.{path.replace('/', '.')}", condition.NamespaceIndex)


def _item(
    parent: ua.NodeId, nodeid: ua.NodeId, name: ua.QualifiedName, nodeclass: ua.NodeClass,
    reference: int, typedef: int, attributes: Any,
) -> ua.AddNodesItem:
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = name
    item.NodeClass = nodeclass
    item.ParentNodeId = parent
    item.ReferenceTypeId = ua.NodeId(reference)
    item.TypeDefinition = ua.NodeId(typedef)
    item.NodeAttributes = attributes
    return item


def condition_items(
    folder: ua.NodeId, condition: ua.NodeId, ns: int, name: str
) -> list[ua.AddNodesItem]:
    """AddNodes items for one compact AlarmConditionType instance below `folder`."""
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    attrs.EventNotifier = 0
    items = [_item(folder, condition, ua.QualifiedName(name, ns), ua.NodeClass.Object,
                   O.HasComponent, O.AlarmConditionType, attrs)]  # fmt: skip
    shelving = ua.ObjectAttributes()
    shelving.DisplayName = ua.LocalizedText("ShelvingState")
    items.append(_item(condition, child_id(condition, "ShelvingState"),
                       ua.QualifiedName("ShelvingState", 0), ua.NodeClass.Object,
                       O.HasComponent, O.ShelvedStateMachineType, shelving))  # fmt: skip
    for path, reference, typedef, kind in _CHILDREN:
        parent_path, _, leaf = path.rpartition("/")
        parent = child_id(condition, parent_path) if parent_path else condition
        var = ua.VariableAttributes()
        var.DisplayName = ua.LocalizedText(leaf)
        var.DataType = ua.NodeId(_TYPES[kind])
        var.Value = ua.Variant()
        var.ValueRank = -1
        var.AccessLevel = var.UserAccessLevel = ua.AccessLevel.CurrentRead.mask
        items.append(_item(parent, child_id(condition, path), ua.QualifiedName(leaf, 0),
                           ua.NodeClass.Variable, reference, typedef, var))  # fmt: skip
    return items


def new_event(source: ua.NodeId, source_name: str, condition: ua.NodeId) -> Any:
    """The event object of one condition; every transition updates and sends it again."""
    event = event_objects.AlarmCondition(sourcenode=source)
    event.SourceName = source_name
    event.add_property("NodeId", condition, V.NodeId)  # the ConditionId of event filters
    for path in ("ShelvingState/CurrentState", "ShelvingState/CurrentState/Id",
                 "ShelvingState/UnshelveTime"):
        event.add_property(path, None, dict((p, k) for p, _, _, k in _CHILDREN)[path])
    event.data_types["MaxTimeShelved"] = V.Double
    return event


def new_event_id() -> bytes:
    return uuid.uuid4().bytes


def fill_event(
    event: Any, change: Transition | None, alarm: Alarm, now: float, max_shelve_s: float
) -> dict[str, Any]:
    """Set the event's fields for the alarm's lifecycle after `change`; returns the values of
    the condition's variables (the same fields) to write into the address space."""
    moment = datetime.now(UTC)
    event.EventId = new_event_id()
    event.Time = event.ReceiveTime = moment
    event.Message = ua.LocalizedText(alarm.message or alarm.name)
    event.Severity = event.LastSeverity = alarm.severity
    event.ConditionClassId = ua.NodeId(O.ProcessConditionClassType)
    event.ConditionClassName = ua.LocalizedText("ProcessConditionClassType")
    event.ConditionName = alarm.name
    event.BranchId = ua.NodeId()
    event.Retain = alarm.current
    event.Quality = ua.StatusCode(ua.StatusCodes.Good)
    if change is not None and change.kind in ("acknowledged", "shelved", "unshelved"):
        event.Comment = ua.LocalizedText(change.comment)
        event.ClientUserId = change.user
    elif event.Comment is None:
        event.Comment, event.ClientUserId = ua.LocalizedText(""), ""
    states = {"EnabledState": True, "ActiveState": alarm.active, "AckedState": alarm.acked,
              "SuppressedState": alarm.suppressed}  # fmt: skip
    for name, value in states.items():
        setattr(event, name, ua.LocalizedText(TWO_STATES[name][0 if value else 1]))
        setattr(event, f"{name}/Id", value)
    text, state_id = SHELVING_STATES[alarm.shelve_kind if alarm.shelved else ""]
    setattr(event, "ShelvingState/CurrentState", ua.LocalizedText(text))
    setattr(event, "ShelvingState/CurrentState/Id", ua.NodeId(state_id))
    remaining = 0.0 if alarm.shelved_until is None else max(alarm.shelved_until - now, 0.0)
    setattr(event, "ShelvingState/UnshelveTime", remaining * 1000.0)
    event.SuppressedOrShelved = alarm.suppressed or alarm.shelved
    event.MaxTimeShelved = max_shelve_s * 1000.0
    return {path: getattr(event, path, None) for path, _, _, _ in _CHILDREN}
