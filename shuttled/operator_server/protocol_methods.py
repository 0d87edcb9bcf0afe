"""The protocol library over OPC UA (SPEC §12): `DeviceSet/<instrument>/Protocols` with the
lifecycle methods and the tech-transfer package methods, and `.../Users` with UnlockUser.

They sit at the instrument, not at a unit: a master recipe is approved for the instrument, and
a protocol loaded on U01 and on U07 is one protocol with one approval. Every call goes through
MethodHandlers.handle, so the order of checks (role, arguments, state) and the audit record of
every call, refused or not, are those of the unit methods.

Export asks the instrument's own digital twin for the analysis it packs: `shuttlectl analyze`
of the same installation in a child process (the operator interface does not import the
simulation, and a 14-day analysis must not run on the control loop's event loop). The result is
kept per identity: the text cannot change, so neither can its analysis.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog
from asyncua import Node, ua

from protocols import ProtocolInvalid, load_protocol_text
from shuttled import __version__
from shuttled.engine.protocol_approval import RECORD_KIND, ProtocolApprovals
from shuttled.operator_server.address_space import INSTRUMENT_METHOD_SIGNATURES
from shuttled.operator_server.audit_methods import method_argument
from shuttled.operator_server.identity import METHOD_ROLES, Caller, UsersFileManager
from shuttled.operator_server.methods import MethodHandlers, Refusal
from shuttled.operator_server.signing import prove_signer
from shuttled.records.audit import utc_now
from shuttled.records.instrument_key import load_or_create
from shuttled.records.transfer_package import (
    PackageRefused,
    build_package,
    parse_trusted_key,
    verify_package,
)

log = structlog.get_logger("shuttled.operator")

TRUSTED_SITES = "trusted-sites"
ANALYSIS_TIMEOUT_S = 900.0
S = ua.VariantType.String


class ProtocolMethods:
    def __init__(
        self, handlers: MethodHandlers, approvals: ProtocolApprovals, users: UsersFileManager,
        data_dir: Path, instrument_id: str,
    ) -> None:
        self.handlers = handlers
        self.approvals = approvals
        self.users = users
        self.data_dir = data_dir
        self.instrument_id = instrument_id
        self._analyses: dict[str, dict[str, Any]] = {}

    async def add_to(self, device: Node, ns: int) -> None:
        for folder, names in (
            ("Protocols", ("ListProtocols", "ShowProtocol", "SubmitProtocol", "ApproveProtocol",
                           "RetireProtocol", "ExportProtocol", "ImportProtocol")),
            ("Users", ("UnlockUser", "WhoAmI")),
        ):
            node = await device.add_object(ua.NodeId(f"{self.instrument_id}.{folder}", ns),
                                           ua.QualifiedName(folder, ns))
            self.handlers.units[node.nodeid] = ""  # instrument-wide: no unit in the audit record
            for name in names:
                inputs, outputs = INSTRUMENT_METHOD_SIGNATURES[name]
                await node.add_method(
                    ua.NodeId(f"{self.instrument_id}.{folder}.{name}", ns),
                    ua.QualifiedName(name, ns), self._callback(name),
                    [method_argument(n, ua.ObjectIds.String, d) for n, d in inputs],
                    [method_argument(n, ua.ObjectIds.String, d) for n, d in outputs],
                )

    def _callback(self, name: str):
        act = getattr(self, f"_{name}")

        async def callback(parent: ua.NodeId, *args: Any):
            return await self.handlers.handle(parent, name, args, act)

        return callback

    # --- reading -----

    def _ListProtocols(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        listing = self.approvals.listing()
        return [ua.Variant(json.dumps(listing), S)], f"{len(listing)} protocol(s)"

    def _ShowProtocol(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        (identity,) = values
        arguments["template_id"] = identity
        return [ua.Variant(json.dumps(self.approvals.describe(identity)), S)], identity

    # --- the lifecycle -----

    async def _SubmitProtocol(self, unit: str, values: list[str], caller: Caller,
                              arguments: dict):
        return await self._signed_step(self.approvals.submit, values, caller, arguments)

    async def _ApproveProtocol(self, unit: str, values: list[str], caller: Caller,
                               arguments: dict):
        return await self._signed_step(self.approvals.approve, values, caller, arguments)

    async def _signed_step(self, step, values: list[str], caller: Caller, arguments: dict):
        identity, signature = values
        arguments["template_id"] = identity
        signer = await prove_signer(self.users, caller, signature, arguments)
        state = step(identity, signer)
        return [ua.Variant(state, S)], state

    async def _RetireProtocol(self, unit: str, values: list[str], caller: Caller,
                              arguments: dict):
        identity, reason, signature = values
        arguments["template_id"] = identity
        signer = await prove_signer(self.users, caller, signature, arguments)
        state = self.approvals.retire(identity, signer, reason.strip())
        return [ua.Variant(state, S)], state

    # --- tech transfer -----

    async def _ExportProtocol(self, unit: str, values: list[str], caller: Caller,
                              arguments: dict):
        (identity,) = values
        arguments["template_id"] = identity
        entry = self.approvals.entry(identity)
        key = load_or_create(self.data_dir)
        content = {
            "protocol": {"identity": entry.identity, "name": entry.name,
                         "version": entry.version, "sha256": entry.sha256, "text": entry.text},
            "lifecycle": {"state": entry.state, "history": [t.__dict__ for t in entry.history],
                          "origin": entry.origin},
            "signatures": [s.to_json() for s in
                           self.approvals.signatures.of(RECORD_KIND, identity)],
            "analysis": await self._analysis(entry.identity, entry.text),
            "origin": {"instrument_id": self.instrument_id, "key_id": key.key_id,
                       "public_key_pem": key.public.pem.decode("ascii"),
                       "exported_utc": utc_now(), "exported_by": caller.name,
                       "software": f"shuttled {__version__}"},
        }
        package = build_package(content, key)
        return [ua.Variant(package.decode("utf-8"), S)], f"exported {identity}"

    async def _analysis(self, identity: str, text: str) -> dict[str, Any]:
        if identity in self._analyses:
            return self._analyses[identity]
        with tempfile.TemporaryDirectory(prefix="shuttled-export-") as folder:
            path = Path(folder) / "protocol.yaml"
            path.write_text(text, encoding="utf-8")
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "shuttled.cli.ctl", "analyze", str(path), "--json",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=folder,
            )
            try:
                out, err = await asyncio.wait_for(process.communicate(), ANALYSIS_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
                return {"error": f"the analysis took longer than {ANALYSIS_TIMEOUT_S:.0f} s"}
        try:
            analysis = json.loads(out.decode("utf-8"))
        except ValueError:
            reason = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            return {"error": f"the analysis failed: {reason[0]}"}
        self._analyses[identity] = analysis
        return analysis

    def _trusted_keys(self, text: str) -> list:
        if text.strip():
            return [parse_trusted_key(text, "TrustedKey")]
        folder = self.data_dir / TRUSTED_SITES
        return [parse_trusted_key(p.read_bytes(), str(p)) for p in sorted(folder.glob("*.pem"))]

    def _ImportProtocol(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        package_text, trusted_text = values
        try:
            package = verify_package(package_text.encode("utf-8"),
                                     self._trusted_keys(trusted_text))
        except PackageRefused as refused:
            raise Refusal(ua.StatusCodes.BadInvalidArgument,
                          f"package refused: {refused}") from None
        protocol_data = package.protocol
        arguments.update(template_id=protocol_data.get("identity"), key_id=package.key_id,
                         package_sha256=package.content_sha256)
        try:
            protocol = load_protocol_text(protocol_data["text"], "<package>")
        except ProtocolInvalid as invalid:
            first = invalid.errors[0].located if invalid.errors else "invalid"
            raise Refusal(ua.StatusCodes.BadInvalidArgument,
                          f"package refused: its protocol does not load here: {first}") from None
        origin = dict(package.content.get("origin", {}))
        origin.pop("public_key_pem", None)
        origin.update(package_sha256=package.content_sha256, imported_utc=utc_now(),
                      imported_by=caller.name,
                      state_at_origin=package.content.get("lifecycle", {}).get("state"),
                      signatures=package.content.get("signatures", []),
                      analysis=package.content.get("analysis"))
        entry = self.approvals.register(protocol, caller.name, origin=origin)
        return [ua.Variant(entry.identity, S)], f"imported {entry.identity} as {entry.state}"

    # --- accounts -----

    def _UnlockUser(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        name, _reason = values
        arguments["name"] = name
        locks = self.users.locks
        if locks is None or not locks.unlock(name):
            raise Refusal(ua.StatusCodes.BadInvalidArgument, f"account {name!r} is not locked")
        log.info("account unlocked", user=name, by=caller.name)
        return [], f"unlocked {name}"

    def _WhoAmI(self, unit: str, values: list[str], caller: Caller, arguments: dict):
        """The session's own user and role, and what that role may call: the console hides the
        controls a person may not use from the daemon's own table, never from a copy of it."""
        account = self.users.account(caller.name)
        identity = {
            "user": caller.name, "role": caller.role,
            "full_name": account.printed_name if account is not None else caller.name,
            "may": sorted(m for m, roles in METHOD_ROLES.items() if caller.role in roles),
        }
        return [ua.Variant(json.dumps(identity), S)], caller.role
