"""The one error tree. Retryability is a marker class, not a flag, so ``isinstance(e, Transient)``
answers "may this be tried again?" wherever the error surfaces.

    CadastreError
    ├── ConfigurationError (Terminal)              bad settings, unknown adapter, invalid YAML
    │   ├── OwnershipRegistryError (Terminal)      two owners for one field, unknown field
    │   └── MappingError (Terminal)                a mapping file that names unknown fields or values
    ├── ContractError (Terminal)                   a record or change that breaks the canonical contract
    │   ├── SchemaIncompatible (Terminal)          a breaking change between two schema versions
    │   └── UpcastUnavailable (Terminal)           no converter between two majors of an event type
    ├── OwnershipViolation (Terminal)              nothing in a change may be written by its origin
    ├── WriteIndeterminate (Terminal)              a write-back whose effect at the vendor is unknown
    ├── NotFound (Terminal)                        tenant, connection, key or record that does not exist
    ├── AlreadyExists (Terminal)                   a unique name taken twice
    ├── LinkRefused (Terminal)                     an identity link not in the state an operation needs
    ├── AuthenticationError (Terminal)             an API key that is unknown, revoked or lacks a scope
    ├── WebhookRefused (Terminal)                  an inbound webhook not let in: forged, stale, too large
    ├── CredentialError (Terminal)                 a credential reference that cannot be resolved
    │   ├── CredentialNeedsReauth (Terminal)       the vendor refused a refresh; a person must reconnect
    │   └── DecryptionFailed (Terminal)            a sealed secret that does not open (wrong key or row)
    ├── BusUnavailable (Transient)                 the event bus did not take a publish (broker down)
    ├── LockTimeout (Transient)                    a cross-process lock stayed held past the wait
    │   └── SyncInProgress (Transient)             the connection is syncing already elsewhere
    ├── StoreError                                 the database
    │   ├── StoreUnavailable (Transient)           connection refused, lock timeout, serialisation failure
    │   ├── ConcurrentUpdate (Transient)           optimistic version check lost a race; re-read and retry
    │   └── AuditChainBroken (Terminal)            the hash chain does not verify
    └── VendorError                                anything a vendor answered (filled in by the gateway)
        ├── VendorUnavailable (Transient)          5xx, timeouts, resets (retry_after when known)
        │   ├── VendorRateLimited (Transient)      429 (carries retry_after when the vendor sent one)
        │   ├── VendorProtocolError (Transient)    a body that is not what the protocol promises
        │   ├── CircuitOpen (Transient)            the connection's breaker refused the call
        │   ├── BulkheadFull (Transient)           the vendor's concurrency cap stayed full
        │   ├── SyncTimedOut (Transient)           a sync run's watchdog stopped it
        │   └── RequestNotSent (Transient)         refused locally or no connection opened: never sent
        ├── VendorRejected (Terminal)              4xx other than 408/425/429
        ├── VendorAuthRefused (Terminal)           the vendor refused the credential (invalid_client)
        └── AddressRefused (Terminal)              a vendor host resolving to a private address

Messages never contain secrets: errors that concern a credential name it, never its values.
"""

from __future__ import annotations

from typing import Any


class Transient:
    """Marker: the same operation may succeed if tried again later."""


class Terminal:
    """Marker: trying again will fail the same way; a person or a fix is needed."""


class CadastreError(Exception):
    """Root of every error Cadastre raises on purpose."""


class ConfigurationError(CadastreError, Terminal):
    pass


class OwnershipRegistryError(ConfigurationError):
    pass


class ContractError(CadastreError, Terminal):
    pass


class SchemaIncompatible(ContractError):
    pass


class MappingError(ConfigurationError):
    pass


class UpcastUnavailable(ContractError):
    """An event cannot be read as the major a consumer asked for: no converter chain joins them,
    or they are different events."""


class BusUnavailable(CadastreError, Transient):
    """The event bus did not confirm a publish (the broker is down or did not answer in time):
    some of the events may be stored, so the relay publishes the whole batch again."""


class OwnershipViolation(CadastreError, Terminal):
    """Raised by ``apply`` only when no field of a change may be written by its origin system.

    ``result`` is the full ``ApplyResult`` (refused fields with reasons); the refusal is already
    recorded in the audit log when this is raised.
    """

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class WriteIndeterminate(CadastreError, Terminal):
    """After a crash, a write-back target's effect at the vendor cannot be told (a read-back found
    several candidates, or the object changed since): a person reconciles it; it is never resent
    blindly."""


class NotFound(CadastreError, Terminal):
    pass


class LinkRefused(CadastreError, Terminal):
    """An identity link operation its link's state does not allow (confirming a link that is
    linked already, unlinking a suggestion): nothing was written."""


class AlreadyExists(CadastreError, Terminal):
    pass


class AuthenticationError(CadastreError, Terminal):
    pass


class WebhookRefused(CadastreError, Terminal):
    """An inbound webhook request not let in. ``reason`` is a short code (``bad_signature``,
    ``stale_timestamp``, ``too_large`` ...) counted per connection; ``status`` is what the vendor
    is answered (401 for anything about the signature, 413, 404, 503 when the fault is ours).
    Messages name what was wrong, never a secret or a signature."""

    def __init__(self, reason: str, message: str, *, status: int = 401) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class CredentialError(CadastreError, Terminal):
    pass


class CredentialNeedsReauth(CredentialError):
    """The vendor refused a refresh (``invalid_grant``) or a refresh was interrupted where resending
    the refresh token could revoke it: no call uses the credential until it is connected again."""


class DecryptionFailed(CredentialError):
    """A sealed secret does not open: its master key is unknown, or the ciphertext does not belong
    to this row (its associated data names tenant, credential and field)."""


class LockTimeout(CadastreError, Transient):
    pass


class SyncInProgress(LockTimeout):
    """The connection is syncing already (another worker, the schedule, another command): two
    runs of one connection would read its pages twice and move its cursor back and forth."""


class StoreError(CadastreError):
    pass


class StoreUnavailable(StoreError, Transient):
    pass


class ConcurrentUpdate(StoreError, Transient):
    pass


class AuditChainBroken(StoreError, Terminal):
    pass


class VendorError(CadastreError):
    pass


class VendorUnavailable(VendorError, Transient):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # seconds until trying again makes sense, when known


class VendorRateLimited(VendorUnavailable):
    pass


class CircuitOpen(VendorUnavailable):
    """The connection's breaker refused the call without sending it."""


class BulkheadFull(VendorUnavailable):
    """The vendor's cap on concurrent calls stayed full for longer than the call may wait."""


class SyncTimedOut(VendorUnavailable):
    """A sync run's watchdog stopped it: no progress, or past its deadline."""


class VendorProtocolError(VendorUnavailable):
    pass


class RequestNotSent(VendorUnavailable):
    """The request never reached the vendor (a local limit refused it, or no connection opened),
    so sending it again cannot repeat anything the vendor did."""


class VendorRejected(VendorError, Terminal):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VendorAuthRefused(VendorError, Terminal):
    pass


class AddressRefused(VendorError, Terminal):
    """A vendor host resolved to a loopback, private, link-local or metadata address and the
    connection is not allow-listed for it (server-side request forgery guard)."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient)
