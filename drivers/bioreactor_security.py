"""Security of the session to a bioreactor controller: encrypted, and only to a trusted controller.

A plant network is shared; a temperature loop must not be open to anyone on it. By default the
driver signs and encrypts (Basic256Sha256, or Aes256_Sha256_RsaPss) with its own application
certificate, made on first start under `pki_dir/own`, and opens a session only with a controller
whose certificate an administrator has put in `pki_dir/trusted`. The controller's certificate is
checked *before* anything is sent under it: it is read from the endpoint list (over the
unauthenticated discovery channel every OPC UA client uses), compared with the trust list, and
only then used to open the secure channel; asyncua then refuses a session whose certificate is
not that one. An unknown certificate is copied to `pki_dir/rejected`, and the error says where
an administrator must copy it. `policy="None"` exists for a controller that offers nothing
else; the daemon logs a warning at every start when it is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asyncua import Client, ua
from asyncua.crypto import security_policies

from drivers.interfaces import DeviceError
from drivers.opcua_pki import (
    OwnCertificate,
    TrustList,
    application_uris,
    ensure_certificate,
    load_der,
    outside_validity,
)

# Policy names as the operator server's configuration spells them (ua.SecurityPolicyType), and
# asyncua's client spelling, which earlier configurations used.
POLICIES: dict[str, type[security_policies.SecurityPolicy]] = {
    "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256,
    "Aes256_Sha256_RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "Aes128_Sha256_RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
    "Aes256Sha256RsaPss": security_policies.SecurityPolicyAes256Sha256RsaPss,
    "Aes128Sha256RsaOaep": security_policies.SecurityPolicyAes128Sha256RsaOaep,
}
MODES = {
    "Sign": ua.MessageSecurityMode.Sign,
    "SignAndEncrypt": ua.MessageSecurityMode.SignAndEncrypt,
}
DEFAULT_CLIENT_URI = "urn:cellshuttle:shuttled:controller-link"


class ControllerNotTrusted(DeviceError):
    """The controller's certificate is not in the trust list: refused, kept in `rejected/`."""

    def __init__(self, endpoint: str, copied_to: Path, trusted_dir: Path) -> None:
        super().__init__(
            f"bioreactor controller {endpoint}: unknown certificate, connection refused; its "
            f"certificate is in {copied_to}: if it is the controller's (check the thumbprint), "
            f"copy it to {trusted_dir}/ to trust it"
        )
        self.copied_to = copied_to
        self.trusted_dir = trusted_dir


class ControllerRefusedUs(DeviceError):
    """The controller does not trust the daemon's client certificate."""

    def __init__(self, endpoint: str, status: str, certificate: Path) -> None:
        super().__init__(
            f"bioreactor controller {endpoint} refused the daemon's certificate ({status}): "
            f"add {certificate} to the controller's trusted certificates"
        )
        self.certificate = certificate


@dataclass(frozen=True)
class OpcUaSecurity:
    """How to secure the session: a policy with a mode, the client's certificate (given, or made
    under `pki_dir/own`) and the controller's (pinned, or checked against `pki_dir/trusted`)."""

    policy: str = "Basic256Sha256"
    mode: str = "SignAndEncrypt"
    certificate: str | None = None  # our client certificate and key; None: made under pki_dir
    private_key: str | None = None
    server_certificate: str | None = None  # pinned: only this controller, no trust list needed
    pki_dir: str | None = None  # own/, trusted/, rejected/
    application_uri: str = DEFAULT_CLIENT_URI  # of a certificate made here

    def __post_init__(self) -> None:
        if self.insecure:
            return
        if self.policy not in POLICIES:
            raise ValueError(f"unknown security policy {self.policy!r} "
                             f"(known: None, {', '.join(POLICIES)})")
        if self.mode not in MODES:
            raise ValueError(f"unknown security mode {self.mode!r} (Sign or SignAndEncrypt)")
        if (self.certificate is None) != (self.private_key is None):
            raise ValueError("certificate and private_key go together")
        if self.certificate is None and self.pki_dir is None:
            raise ValueError(f"security policy {self.policy} needs a certificate and private "
                             "key, or a pki directory to make them in")
        if self.server_certificate is None and self.pki_dir is None:
            raise ValueError(f"security policy {self.policy} needs a trust list (pki directory) "
                             "or the controller's certificate")

    @property
    def insecure(self) -> bool:
        return self.policy == "None"

    @property
    def trust_list(self) -> TrustList | None:
        return TrustList(Path(self.pki_dir)) if self.pki_dir is not None else None

    def client_certificate(self) -> OwnCertificate:
        """Our certificate and key: the configured ones, or made on first use under pki_dir."""
        if self.certificate is not None and self.private_key is not None:
            return OwnCertificate(Path(self.certificate), Path(self.private_key))
        assert self.pki_dir is not None
        return ensure_certificate(
            Path(self.pki_dir) / "own", self.application_uri, "shuttled controller link",
            server=False,
        )

    async def apply(self, client: Client, endpoint: str) -> None:
        """Make `client` open a signed and encrypted session to a trusted controller only."""
        if self.insecure:
            return
        own = self.client_certificate()
        der = own.certificate.read_bytes()
        client.application_uri = next(iter(application_uris(der)), self.application_uri)
        policy, mode = POLICIES[self.policy], MODES[self.mode]
        if self.server_certificate is not None:
            server_der = load_der(Path(self.server_certificate))
            if server_der is None:
                raise DeviceError(f"{self.server_certificate}: not a certificate")
        else:
            server_der = await self._trusted_server_certificate(client, endpoint, policy, mode)
        invalid = outside_validity(server_der)
        if invalid is not None:
            raise DeviceError(f"bioreactor controller {endpoint}: its certificate is {invalid}: "
                              "the controller needs a new certificate, trusted anew")
        await client.set_security(policy, str(own.certificate), str(own.private_key),
                                  server_certificate=server_der, mode=mode)

    async def _trusted_server_certificate(
        self,
        client: Client,
        endpoint: str,
        policy: type[security_policies.SecurityPolicy],
        mode: ua.MessageSecurityMode,
    ) -> bytes:
        offered = await client.connect_and_get_server_endpoints()
        match = [e for e in offered if e.SecurityPolicyUri == policy.URI and e.SecurityMode == mode]
        if not match:
            names = sorted({_endpoint_name(e) for e in offered})
            raise DeviceError(f"bioreactor controller {endpoint} offers no {self.policy} "
                              f"{self.mode} endpoint (it offers: {', '.join(names) or 'none'})")
        der = first_certificate(match[0].ServerCertificate or b"")
        trust = self.trust_list
        assert trust is not None
        if not der:
            raise DeviceError(f"bioreactor controller {endpoint} sent no certificate")
        if not trust.is_trusted(der):
            raise ControllerNotTrusted(endpoint, trust.reject(der), trust.trusted_dir)
        return der


def _endpoint_name(endpoint: ua.EndpointDescription) -> str:
    policy = endpoint.SecurityPolicyUri.rsplit("#", 1)[-1]
    return policy if policy == "None" else f"{policy} {endpoint.SecurityMode.name}"


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send theirs with its CA chain)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    length = der[1]
    if length < 0x80:
        return der[: 2 + length]
    size = length & 0x7F
    return der[: 2 + size + int.from_bytes(der[2 : 2 + size], "big")]


def refusal_of_our_certificate(error: BaseException) -> str | None:
    """The status name if the controller refused our certificate, else None."""
    if isinstance(error, ua.UaStatusCodeError):
        name = ua.StatusCode(error.code).name
        if name.startswith("BadCertificate") or name == "BadSecurityChecksFailed":
            return name
    return None
