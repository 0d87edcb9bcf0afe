"""The daemon's OPC UA server for operators and the MES (SPEC §5), assembled and run.

Everything insecure that asyncua does by default is switched off here, explicitly: SecurityPolicy
None only when the configuration allows it, identities only from the users file (no anonymous
sessions unless `allow_anonymous_read`, no built-in admin), no node management or writes over
the network, and client certificates checked against the trust list.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import structlog
from asyncua import Server, ua

from drivers.clock import Clock
from shuttled.alarms.book import AlarmBook
from shuttled.config import DaemonConfig
from shuttled.engine.operations import Operations
from shuttled.engine.protocol_approval import ProtocolApprovals
from shuttled.operator_server.address_space import NAMESPACE_URI, AddressSpaceBuilder, UnitNodes
from shuttled.operator_server.alarm_conditions import AlarmConditions
from shuttled.operator_server.audit_methods import AuditMethods
from shuttled.operator_server.bounded_transport import BoundedServer
from shuttled.operator_server.history import JournalHistory, historize
from shuttled.operator_server.identity import (
    OperatorInternalServer,
    OperatorPermissions,
    UsersFileManager,
)
from shuttled.operator_server.limits import apply_limits
from shuttled.operator_server.methods import MethodHandlers
from shuttled.operator_server.mirror import Mirror
from shuttled.operator_server.pki import TrustList, ensure_certificate
from shuttled.operator_server.protocol_methods import ProtocolMethods
from shuttled.operator_server.read_only import make_read_only
from shuttled.operator_server.record_methods import RecordMethods
from shuttled.operator_server.report_methods import ReportMethods
from shuttled.operator_server.step_methods import StepMethods
from shuttled.records.account_locks import AccountLocks
from shuttled.records.audit import AuditTrail
from shuttled.records.journal import Journal
from shuttled.reports.record_review import RecordReview

log = structlog.get_logger("shuttled.operator")

POLICIES = {
    "Basic256Sha256": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Aes256_Sha256_RsaPss": ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
}
MIN_REFRESH_INTERVAL_S = 0.1  # wall time: at --speed max, ticks come far faster than anyone reads


class OperatorServerError(Exception):
    """The server cannot start as configured (the message says why)."""


def _drop_service_fault_lines(record: logging.LogRecord) -> bool:
    """asyncua logs every refused request at ERROR; we log each refusal once, with its reason."""
    return not str(record.msg).startswith("sending service fault response")


def _is_loopback_host(host: str | None) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


class OperatorServer:
    def __init__(
        self,
        config: DaemonConfig,
        operations: Operations,
        journal: Journal,
        clock: Clock,
        audit: AuditTrail | None = None,
        standard_nodes_cache: Path | None = None,
        approvals: ProtocolApprovals | None = None,
        locks: AccountLocks | None = None,
    ) -> None:
        """`standard_nodes_cache`: file of the standard address space cache (standard_nodes.py);
        None builds it in memory on every start (1.2 s), as a short-lived daemon may as well."""
        if config.operator is None:
            raise OperatorServerError("the configuration has no operator interface ([opcua])")
        self.config = config
        self.settings = config.operator
        self.operations = operations
        self.journal = journal
        self.clock = clock
        self.audit = audit or AuditTrail(journal.path)
        self._owns_audit = audit is None
        self.standard_nodes_cache = standard_nodes_cache
        self.approvals = approvals
        self.locks = locks
        self.users: UsersFileManager | None = None
        self.endpoint = self.settings.endpoint
        self.application_uri = f"urn:cellshuttle:shuttled:{config.instrument_id}"
        self.server: Server | None = None
        self.mirror: Mirror | None = None
        self.handlers: MethodHandlers | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._last_refresh = 0.0
        # The alarm model (SPEC §13), given by the composition root before start().
        self.alarm_book: AlarmBook | None = None
        self.alarm_conditions: AlarmConditions | None = None

    async def start(self) -> None:
        settings = self.settings
        url = urlparse(self.endpoint)
        if settings.allow_insecure and not _is_loopback_host(url.hostname):
            log.warning("SecurityPolicy None is offered on a non-loopback endpoint",
                        endpoint=self.endpoint)
        logging.getLogger("asyncua.server.uaprocessor").addFilter(_drop_service_fault_lines)
        users = UsersFileManager(settings.users_file, settings.allow_anonymous_read,
                                 self.locks, self._audit_lock)
        self.users = users
        if settings.users_file is None:
            log.warning("no users file configured: nobody can sign in to the operator server")
        server = BoundedServer(iserver=OperatorInternalServer(user_manager=users))  # type: ignore[arg-type]
        await server.init(self.standard_nodes_cache)
        apply_limits(server, settings)
        server.set_endpoint(self.endpoint)
        server.set_server_name(f"shuttled {self.config.instrument_id}")
        server.product_uri = "urn:cellshuttle:shuttled"
        server.manufacturer_name = "Cell Shuttle"
        await server.set_application_uri(self.application_uri)
        pki = self.config.data_dir / "pki"
        own = ensure_certificate(
            pki / "own", self.application_uri, f"shuttled {self.config.instrument_id}", server=True
        )
        await server.load_certificate(str(own.certificate))
        await server.load_private_key(str(own.private_key))
        policies = [POLICIES[name] for name in settings.security_policies]
        if settings.allow_insecure:
            policies.insert(0, ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies, permission_ruleset=OperatorPermissions())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if settings.allow_anonymous_read:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        server.allow_remote_admin(False)
        server.set_certificate_validator(TrustList(pki, settings.trust_all_loopback_clients))

        ns = await server.register_namespace(NAMESPACE_URI)
        builder = AddressSpaceBuilder(server, ns, self.config.instrument_id)
        self.handlers = MethodHandlers(self.operations, self.audit, self._after_change)
        self.handlers.users = users  # Start and Abort sign in GMP mode (SPEC §12)
        StepMethods(self.handlers, self.operations, users).attach()  # Confirm, Verify (§12)
        device, health, unit_set = await builder.build_device()
        await AuditMethods(self.audit).add_to(device, ns, self.config.instrument_id)
        await ReportMethods(self.journal.path, self.audit).add_to(
            device, ns, self.config.instrument_id
        )
        if self.approvals is not None:
            await ProtocolMethods(self.handlers, self.approvals, users, self.config.data_dir,
                                  self.config.instrument_id).add_to(device, ns)
            review = RecordReview(self.journal.path, self.approvals.signatures)
            await RecordMethods(self.handlers, review, users, self.config.instrument_id
                                ).add_to(device, ns)
        units: dict[str, UnitNodes] = {}
        for unit in self.config.units:
            nodes = await builder.build_unit(
                unit_set, unit.unit_id, sorted(unit.pumps), self.handlers
            )
            units[unit.unit_id] = nodes
            self.handlers.units[nodes.object.nodeid] = unit.unit_id
        if self.alarm_book is not None:
            self.alarm_conditions = AlarmConditions(
                server, ns, self.config.instrument_id, self.alarm_book, self.audit,
                device.nodeid, {unit: nodes.object.nodeid for unit, nodes in units.items()},
            )
            await self.alarm_conditions.setup()
        await historize(server, JournalHistory(self.journal.path, self.clock.to_epoch),
                        {unit: nodes.variables for unit, nodes in units.items()})
        self.mirror = Mirror(server, builder, units, health, self.operations, self.journal,
                             self.clock)
        make_read_only(server.iserver.aspace._nodes)
        await self.mirror.add_past_results()
        await self.mirror.refresh()
        try:
            await server.start()
        except OSError as error:
            raise OperatorServerError(f"cannot listen on {self.endpoint}: {error}") from None
        self.server = server
        log.info("operator server listening", endpoint=self.endpoint,
                 policies=[p.name for p in policies])

    def _audit_lock(self, name: str, how: str) -> None:
        """SPEC §12: every lock is audited (the unlock is the UnlockUser call's own record)."""
        self.audit.append(user=name, role="", unit="", method="AccountLocked",
                          arguments={"failed_checks": how}, reason="", result="Good",
                          detail="five failed password checks within 15 minutes")

    def attach_loop(self, loop: Any) -> None:
        """The control loop, whose live values (readings, heater, estimates, alarms) we show."""
        if self.mirror is not None:
            self.mirror.loop = loop

    async def _after_change(self, unit: str) -> None:
        if self.mirror is not None:
            await self.mirror.refresh_unit(unit)

    def request_refresh(self) -> None:
        """From the control loop's per-tick callback (synchronous): refresh soon, coalesced."""
        if self.mirror is None or self.server is None:
            return
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        wall = time.monotonic()
        if wall - self._last_refresh < MIN_REFRESH_INTERVAL_S:
            return
        self._last_refresh = wall
        self._refresh_task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            assert self.mirror is not None
            await self.mirror.refresh()
        except Exception:
            log.exception("operator server refresh failed")

    async def refresh(self) -> None:
        if self.mirror is not None:
            await self.mirror.refresh()

    async def stop(self) -> None:
        if self._refresh_task is not None:
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh_task
        if self.alarm_conditions is not None:
            await self.alarm_conditions.stop()
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._owns_audit:
            self.audit.close()
