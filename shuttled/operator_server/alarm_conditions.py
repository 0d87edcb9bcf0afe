"""OPC UA Alarms & Conditions over the alarm book (SPEC §13).

Each alarm of the book is a condition (alarm_nodes.py) whose SourceNode is its unit. Events go
up the notifier hierarchy — unit, instrument, Server — so a client subscribed to any of them
sees every transition: asyncua delivers an event only to monitored items on the one node that
emits it, so each event is handed to each notifier in turn here (asyncua's subscription and
event-filter machinery does the rest). ConditionRefresh/ConditionRefresh2 are ours for the same
reason (asyncua's replays retained events to their emitting node only). The methods — the
type's Acknowledge and the shelving methods of ShelvedStateMachineType — check the caller's
role first, then the arguments, then the lifecycle, and every call that does not become a
transition is audited as a refusal with its status code (a transition is audited by the book).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections import deque
from datetime import UTC, datetime
from typing import Any

import structlog
from asyncua import Server, ua
from asyncua.common import event_objects

from shuttled.alarms.book import AlarmBook
from shuttled.alarms.model import Alarm, AlarmRefused, Transition
from shuttled.operator_server.alarm_nodes import (
    child_id,
    condition_id,
    condition_items,
    fill_event,
    new_event,
    new_event_id,
)
from shuttled.operator_server.identity import Caller, current_caller, current_session_id
from shuttled.records.audit import AuditTrail

log = structlog.get_logger("shuttled.operator")

O = ua.ObjectIds  # noqa: E741
ACK_ROLES = frozenset({"operator", "supervisor"})
SHELVE_ROLES = frozenset({"supervisor"})
RECENT_EVENT_IDS = 32  # an Acknowledge may name any of a condition's recent events
_REFUSALS = {
    AlarmRefused.UNKNOWN: ua.StatusCodes.BadNodeIdUnknown,
    AlarmRefused.ALREADY_ACKED: ua.StatusCodes.BadConditionBranchAlreadyAcked,
    AlarmRefused.SHELVING_TIME: ua.StatusCodes.BadShelvingTimeOutOfRange,
    AlarmRefused.ALREADY_SHELVED: ua.StatusCodes.BadConditionAlreadyShelved,
    AlarmRefused.NOT_SHELVED: ua.StatusCodes.BadConditionNotShelved,
    AlarmRefused.ARGUMENT: ua.StatusCodes.BadInvalidArgument,
}
# method node id -> (name, roles, argument kinds): the standard methods we serve.
METHODS: dict[int, tuple[str, frozenset[str], tuple[str, ...]]] = {
    O.AcknowledgeableConditionType_Acknowledge: ("Acknowledge", ACK_ROLES, ("event", "text")),
    O.ShelvedStateMachineType_TimedShelve: ("TimedShelve", SHELVE_ROLES, ("duration",)),
    O.ShelvedStateMachineType_TimedShelve2: ("TimedShelve2", SHELVE_ROLES, ("duration", "text")),
    O.ShelvedStateMachineType_OneShotShelve: ("OneShotShelve", SHELVE_ROLES, ()),
    O.ShelvedStateMachineType_OneShotShelve2: ("OneShotShelve2", SHELVE_ROLES, ("text",)),
    O.ShelvedStateMachineType_Unshelve: ("Unshelve", SHELVE_ROLES, ()),
    O.ShelvedStateMachineType_Unshelve2: ("Unshelve2", SHELVE_ROLES, ("text",)),
}


class _Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Condition:
    def __init__(self, node: ua.NodeId, unit_node: ua.NodeId, event: Any) -> None:
        self.node, self.unit_node, self.event = node, unit_node, event
        self.event_ids: deque[bytes] = deque(maxlen=RECENT_EVENT_IDS)
        self.written: dict[str, Any] = {}  # what the variables hold: write only what changed


class AlarmConditions:
    def __init__(
        self, server: Server, ns: int, instrument: str, book: AlarmBook, audit: AuditTrail,
        device: ua.NodeId, units: dict[str, ua.NodeId],
    ) -> None:
        self.server, self.ns, self.instrument = server, ns, instrument
        self.book, self.audit, self.device, self.units = book, audit, device, units
        self.conditions: dict[tuple[str, str], _Condition] = {}
        self._by_node: dict[ua.NodeId, tuple[str, str]] = {}
        self._queue: asyncio.Queue[list[Transition]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.list_node = ua.NodeId(f"{instrument}.AlarmList", ns)

    # --- set-up -----

    async def setup(self) -> None:
        """Notifiers, the AlarmList variable, the method handlers, the conditions the book
        already has (restored from the journal), then follow the book."""
        isession = self.server.iserver.isession
        device = self.server.get_node(self.device)
        await device.set_event_notifier([ua.EventNotifier.SubscribeToEvents])
        refs = [self._reference(ua.NodeId(O.Server), self.device, O.HasNotifier)]
        for unit_node in self.units.values():
            await self.server.get_node(unit_node).set_event_notifier(
                [ua.EventNotifier.SubscribeToEvents])
            refs.append(self._reference(self.device, unit_node, O.HasNotifier))
            folder = ua.NodeId(f"{unit_node.Identifier}.Conditions", self.ns)
            await self.server.get_node(unit_node).add_folder(folder, f"{self.ns}:Conditions")
        for result in await isession.add_references(refs):
            result.check()
        await device.add_variable(self.list_node, f"{self.ns}:AlarmList", "[]",
                                  ua.VariantType.String)
        for method in METHODS:
            isession.add_method_callback(ua.NodeId(method), self._method_handler(method))
        for method in (O.ConditionType_ConditionRefresh, O.ConditionType_ConditionRefresh2):
            isession.add_method_callback(ua.NodeId(method), self._refresh)
        for alarm in self.book.current(everything=True):
            await self._apply(None, alarm, send=False)
        await self._write_list()
        self.book.subscribe(self._queue.put_nowait)
        self._worker = asyncio.get_running_loop().create_task(self._follow())

    @staticmethod
    def _reference(source: ua.NodeId, target: ua.NodeId, kind: int) -> ua.AddReferencesItem:
        ref = ua.AddReferencesItem()
        ref.SourceNodeId, ref.TargetNodeId = source, target
        ref.ReferenceTypeId, ref.IsForward = ua.NodeId(kind), True
        ref.TargetNodeClass = ua.NodeClass.Object
        return ref

    async def stop(self) -> None:
        self.book.unsubscribe(self._queue.put_nowait)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def drain(self) -> None:
        """Until every transition so far is in the address space and sent (tests, shutdown)."""
        await self._queue.join()

    # --- transitions -> nodes and events -----

    async def _follow(self) -> None:
        while True:
            changes = await self._queue.get()
            try:
                for change in changes:
                    await self._apply(change, change.alarm)
                await self._write_list()
            except Exception:
                log.exception("alarm condition update failed")
            finally:
                self._queue.task_done()

    async def _condition(self, unit: str, name: str) -> _Condition:
        key = (unit, name)
        found = self.conditions.get(key)
        if found is not None:
            return found
        unit_node = self.units[unit]
        node = condition_id(self.ns, self.instrument, unit, name)
        folder = ua.NodeId(f"{unit_node.Identifier}.Conditions", self.ns)
        isession = self.server.iserver.isession
        for result in await isession.add_nodes(condition_items(folder, node, self.ns, name)):
            result.StatusCode.check()
        for result in await isession.add_references(
            [self._reference(unit_node, node, O.HasCondition)]
        ):
            result.check()
        condition = _Condition(node, unit_node, new_event(unit_node, unit, node))
        self.conditions[key] = condition
        self._by_node[node] = key
        self._by_node[child_id(node, "ShelvingState")] = key
        return condition

    async def _apply(self, change: Transition | None, alarm: Alarm, send: bool = True) -> None:
        if alarm.unit not in self.units:
            return
        condition = await self._condition(alarm.unit, alarm.name)
        values = fill_event(condition.event, change, alarm, self.book.clock.now(),
                            self.book.max_shelve_s)  # fmt: skip
        condition.event_ids.append(condition.event.EventId)
        write = self.server.iserver.write_attribute_value
        for path, value in values.items():
            kind = condition.event.data_types.get(path)
            if condition.written.get(path) == value:
                continue
            condition.written[path] = value
            if isinstance(kind, ua.VariantType) and value is not None:
                await write(child_id(condition.node, path), ua.DataValue(ua.Variant(value, kind)))
        if send:
            await self._deliver(condition.event, (condition.unit_node,))

    async def _deliver(
        self, event: Any, sources: tuple[ua.NodeId, ...], subscription_id: int | None = None,
        mid: int | None = None, marker: bool = False,
    ) -> None:
        """Hand `event` to the monitored items of each notifier above its source. A refresh
        `marker` (RefreshStart/End) reaches every item of the subscription whatever its where
        clause, as Part 9 wants: a client filtering OfType AlarmConditionType still has to
        see where a refresh starts and ends."""
        service = self.server.iserver.subscription_service
        subscriptions = (list(service.subscriptions.values()) if subscription_id is None
                         else [service.subscriptions[subscription_id]])  # fmt: skip
        for subscription in subscriptions:
            items = subscription.monitored_item_srv
            for notifier in (*sources, self.device, ua.NodeId(O.Server)):
                event.emitting_node = notifier
                mids = list(items._monitored_events.get(notifier, ()))
                if mid is not None:
                    mids = [m for m in mids if m == mid]
                for item in mids:
                    if marker:
                        await _enqueue_unfiltered(items, event, item)
                    else:
                        await items.trigger_event(event, item)

    async def _write_list(self) -> None:
        rows = []
        for alarm in self.book.current(everything=True):
            row = self.book.describe(alarm)
            condition = self.conditions.get((alarm.unit, alarm.name))
            if condition is not None:
                row["condition"] = condition.node.to_string()
                row["shelving_state"] = child_id(condition.node, "ShelvingState").to_string()
                row["event_id"] = condition.event.EventId.hex()
            rows.append(row)
        await self.server.iserver.write_attribute_value(
            self.list_node, ua.DataValue(ua.Variant(json.dumps(rows), ua.VariantType.String))
        )

    # --- ConditionRefresh -----

    async def _refresh(self, parent: ua.NodeId, *args: Any) -> Any:
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        service = self.server.iserver.subscription_service
        if not values or not isinstance(values[0], int) or values[0] not in service.subscriptions:
            return ua.StatusCode(ua.StatusCodes.BadSubscriptionIdInvalid)
        subscription_id = int(values[0])
        if service.subscriptions[subscription_id].session_id != current_session_id():
            # Part 9: only the caller's own subscriptions; another session's id is invalid here
            return ua.StatusCode(ua.StatusCodes.BadSubscriptionIdInvalid)
        mid = int(values[1]) if len(values) > 1 and isinstance(values[1], int) else None
        items = service.subscriptions[subscription_id].monitored_item_srv
        if mid is not None and mid not in items._monitored_items:
            return ua.StatusCode(ua.StatusCodes.BadMonitoredItemIdInvalid)
        for kind in (event_objects.RefreshStartEvent, None, event_objects.RefreshEndEvent):
            if kind is None:
                for condition in list(self.conditions.values()):
                    if condition.event.Retain:
                        await self._deliver(condition.event, (condition.unit_node,),
                                            subscription_id, mid)  # fmt: skip
                continue
            marker = kind()
            marker.EventId, marker.SourceName = new_event_id(), "Server"
            marker.Time = marker.ReceiveTime = datetime.now(UTC)
            marker.Severity = 100
            await self._deliver(marker, tuple(self.units.values()), subscription_id, mid,
                                marker=True)
        return []

    # --- Acknowledge and the shelving methods -----

    def _method_handler(self, method: int):
        name, roles, kinds = METHODS[method]

        async def handle(parent: ua.NodeId, *args: Any) -> Any:
            return await self._call(parent, name, roles, kinds, args)

        return handle

    async def _call(
        self, parent: ua.NodeId, method: str, roles: frozenset[str], kinds: tuple[str, ...],
        args: tuple[Any, ...],
    ) -> Any:
        caller = current_caller()
        unit, alarm_name = self._by_node.get(parent, ("", ""))
        arguments: dict[str, Any] = {"alarm": alarm_name or parent.to_string()}
        try:
            if caller.role not in roles:
                raise _Refusal(ua.StatusCodes.BadUserAccessDenied,
                               f"{caller.name} ({caller.role}) may not call {method}")
            values = _arguments(method, kinds, args, arguments)
            if not alarm_name:
                raise _Refusal(ua.StatusCodes.BadNodeIdUnknown,
                               f"{parent.to_string()} is not one of this server's alarms")
            self._act(method, unit, alarm_name, values, caller)
        except _Refusal as refusal:
            return self._refused(caller, unit, method, arguments, refusal)
        except AlarmRefused as refused:
            refusal = _Refusal(_REFUSALS[refused.kind], refused.message)
            return self._refused(caller, unit, method, arguments, refusal)
        log.info("alarm method done", unit=unit, alarm=alarm_name, method=method,
                 user=caller.name)
        await self.drain()  # the client's answer comes after the event it caused
        return []

    def _act(self, method: str, unit: str, name: str, values: dict[str, Any],
             caller: Caller) -> None:
        text = values.get("text", "")
        if method == "Acknowledge":
            condition = self.conditions[(unit, name)]
            if values["event"] not in condition.event_ids:
                raise _Refusal(ua.StatusCodes.BadEventIdUnknown,
                               f"EventId is not one of {name}'s recent events on {unit}")
            self.book.acknowledge(unit, name, text, caller.name, caller.role, method)
        elif method.startswith("TimedShelve"):
            self.book.shelve(unit, name, values["duration"] / 1000.0, text, caller.name,
                             caller.role, method)  # fmt: skip
        elif method.startswith("OneShotShelve"):
            self.book.shelve(unit, name, None, text, caller.name, caller.role, method)
        else:
            self.book.unshelve(unit, name, text, caller.name, caller.role, method)

    def _refused(
        self, caller: Caller, unit: str, method: str, arguments: dict[str, Any],
        refusal: _Refusal,
    ) -> ua.CallMethodResult:
        status = ua.StatusCode(refusal.status)
        self.audit.append(user=caller.name, role=caller.role, unit=unit, method=method,
                          arguments=arguments, reason="", result=status.name,
                          detail=refusal.message)  # fmt: skip
        log.info("alarm method refused", unit=unit, method=method, user=caller.name,
                 status=status.name, why=refusal.message)
        return ua.CallMethodResult(
            StatusCode=status,
            InputArgumentDiagnosticInfos=[ua.DiagnosticInfo(AdditionalInfo=refusal.message)],
        )


async def _enqueue_unfiltered(items: Any, event: Any, mid: int) -> None:
    """asyncua's MonitoredItemService._trigger_event without the where clause."""
    data = items._monitored_items.get(mid)
    if data is None:
        return
    fields = ua.EventFieldList()
    fields.ClientHandle = data.client_handle
    fields.EventFields = event.to_event_fields(data.filter.SelectClauses)
    await items.isub.enqueue_event(mid, fields, data.queue_size)


def _arguments(
    method: str, kinds: tuple[str, ...], args: tuple[Any, ...], audited: dict[str, Any]
) -> dict[str, Any]:
    """The arguments by kind, checked: an EventId (ByteString), a text (LocalizedText or
    String), a shelving time (Duration, ms)."""
    if len(args) < len(kinds):
        raise _Refusal(ua.StatusCodes.BadArgumentsMissing,
                       f"{method} takes {len(kinds)} argument(s), got {len(args)}")
    if len(args) > len(kinds):
        raise _Refusal(ua.StatusCodes.BadTooManyArguments,
                       f"{method} takes {len(kinds)} argument(s), got {len(args)}")
    values: dict[str, Any] = {}
    for kind, arg in zip(kinds, args, strict=True):
        value = arg.Value if isinstance(arg, ua.Variant) else arg
        if kind == "event":
            if not isinstance(value, bytes) or not value:
                raise _Refusal(ua.StatusCodes.BadEventIdUnknown, "EventId must be a ByteString")
            audited["event_id"] = value.hex()[:64]
        elif kind == "text":
            value = value.Text if isinstance(value, ua.LocalizedText) else value
            if value is not None and not isinstance(value, str):
                raise _Refusal(ua.StatusCodes.BadInvalidArgument, "Comment must be a text")
            value = (value or "").strip()[:2000]
            audited["comment"] = value
        elif kind == "duration":
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not number:
                raise _Refusal(ua.StatusCodes.BadInvalidArgument,
                               "ShelvingTime must be a Duration (milliseconds)")
            audited["shelving_time_ms"] = value if math.isfinite(value) else str(value)
            if not math.isfinite(value) or value <= 0:
                raise _Refusal(ua.StatusCodes.BadShelvingTimeOutOfRange,
                               f"ShelvingTime {value} ms is not a positive duration")
        values[kind] = value
    return values
