"""The schema translation hook: where a vendor's wire format differs from what its connector reads
(an envelope, renamed keys, a date format), a ``SchemaTranslator`` rewrites JSON bodies in the
gateway, so the connector and mapping see one shape whichever API version the vendor serves."""

from __future__ import annotations

from typing import Any, Protocol


class SchemaTranslator(Protocol):
    def inbound(self, payload: Any, *, path: str) -> Any:
        """A vendor's parsed JSON answer to a call on ``path``, in the connector's shape."""
        ...

    def outbound(self, body: Any, *, path: str) -> Any:
        """A JSON body the connector sends to ``path``, in the vendor's shape."""
        ...
