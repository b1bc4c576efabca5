"""The QuickBooks Online connector (``accounting/quickbooks``): Account, Payment and JournalEntry
lines by CDC, Intuit's webhooks, and write-back with SyncToken concurrency and ``requestid``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, cast

from cadastre.connectors.accounting.quickbooks.connector import QuickBooksConnector
from cadastre.connectors.accounting.quickbooks.settings import QuickBooksSettings
from cadastre.connectors.sdk import AuthSpec, ClientCredentialsAuth, ConnectorSpec
from cadastre.gateway import VendorPolicy
from cadastre.gateway.ratelimit import RateRule

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from cadastre.gateway import Gateway
    from cadastre.mapping import RecordMapper
    from cadastre.ports import Clock, SourceConnector

PAYMENT_MAPPING = "accounting/quickbooks/payment"
LEDGER_ENTRY_MAPPING = "accounting/quickbooks/ledger-entry"
_HERE = Path(__file__).parent


class QuickBooksConnectorSpec(ConnectorSpec):
    name = "accounting/quickbooks"
    system = "accounting"
    # what its records are, for the drift check at configuration load (ownership/claims.py)
    claims: ClassVar[tuple[str, ...]] = ("LedgerAccount.*", "LedgerEntry.*", "Payment.*")
    settings_model = QuickBooksSettings
    family_mapping = _HERE / "mapping.yaml"  # Account -> LedgerAccount
    family_mappings: ClassVar[Mapping[str, Path]] = {
        PAYMENT_MAPPING: _HERE / "payment.yaml",
        LEDGER_ENTRY_MAPPING: _HERE / "ledger_entry.yaml",
    }
    receives_webhooks = True
    # Ledgers are written only once someone has watched what would be sent (issue 8).
    default_writeback_mode: ClassVar[str] = "shadow"

    def base_url(self, settings: BaseModel) -> str:
        return cast("QuickBooksSettings", settings).base_url

    def default_rate_limit(self, settings: BaseModel) -> RateRule | None:
        # Intuit: 500 a minute per company and 10 a second per company and app. One GCRA rule
        # keeps both: 450 a minute (the 10 % headroom) is 7.5 a second, and a burst of 2 on top
        # of it puts at most 9.5 requests in any second.
        return RateRule(500, 60.0, burst=2)

    def policy(self, settings: BaseModel) -> VendorPolicy:
        s = cast("QuickBooksSettings", settings)
        return VendorPolicy(
            vendor="quickbooks", connect=s.connect_timeout, read=s.read_timeout,
            max_attempts=s.max_attempts,
        )  # fmt: skip

    def auth(self, settings: BaseModel) -> AuthSpec:
        # The vault credential (oauth2_authorization_code) decides the grant; this gives it
        # Intuit's token URL when its meta names none.
        return ClientCredentialsAuth(cast("QuickBooksSettings", settings).token_url)

    def mapping_name(self, settings: BaseModel) -> str:
        return self.name

    def stream_mappings(self, settings: BaseModel) -> dict[str, str]:
        wanted = cast("QuickBooksSettings", settings).streams
        found = {"Payment": PAYMENT_MAPPING, "JournalEntryLine": LEDGER_ENTRY_MAPPING}
        return {stream: entry for stream, entry in found.items() if stream in wanted}

    def create(
        self, settings: BaseModel, *, gateway: Gateway, mapper: RecordMapper, clock: Clock
    ) -> SourceConnector:
        return QuickBooksConnector(cast("QuickBooksSettings", settings), gateway=gateway,
                                   clock=clock)  # fmt: skip


CONNECTOR = QuickBooksConnectorSpec()

__all__ = ["CONNECTOR", "QuickBooksConnector", "QuickBooksConnectorSpec", "QuickBooksSettings"]
