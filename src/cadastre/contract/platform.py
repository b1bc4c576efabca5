"""The platform side of the contract: the physical property and the property-management records.

These are Cadastre's own entities (RESO has no leases or ledgers), written by hand. They keep the
one wire convention (PascalCase names, PascalCase enumeration values) and reuse RESO names and
lookups where a RESO field means the same thing (``City``, ``StateOrProvince``, ``ParcelNumber``).
What points to what: Unit -> Property; Lease -> Unit, Property, Residents; Resident -> Lease;
LedgerEntry -> LedgerAccount, Lease, Payment; Payment -> Lease, Resident. Listing -> Property too
(its ``PropertyId``). Only keys are required: a record may arrive before its references resolve,
and making a field required later is a breaking change, while relaxing one is not.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import AwareDatetime, Field, StringConstraints

from cadastre.contract.base import CanonicalModel
from cadastre.contract.reso import (
    AreaUnits,
    Country,
    LotSizeUnits,
    PropertySubType,
    PropertyType,
    StateOrProvince,
    StreetDirection,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=255)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]  # ISO 4217


class UnitStatus(StrEnum):
    VACANT = "Vacant"
    OCCUPIED = "Occupied"
    NOTICE_GIVEN = "NoticeGiven"
    OFFLINE = "Offline"  # down for renovation or repair; not rentable


class LeaseStatus(StrEnum):
    DRAFT = "Draft"
    ACTIVE = "Active"
    NOTICE_GIVEN = "NoticeGiven"
    ENDED = "Ended"
    CANCELED = "Canceled"  # RESO's spelling (StandardStatus.CANCELED)


class LeaseType(StrEnum):
    FIXED_TERM = "FixedTerm"
    MONTH_TO_MONTH = "MonthToMonth"


class AccountType(StrEnum):
    ASSET = "Asset"
    LIABILITY = "Liability"
    EQUITY = "Equity"
    INCOME = "Income"
    EXPENSE = "Expense"


class EntryType(StrEnum):
    DEBIT = "Debit"
    CREDIT = "Credit"


class PaymentMethod(StrEnum):
    ACH = "Ach"
    CARD = "Card"
    CHECK = "Check"
    CASH = "Cash"
    WIRE_TRANSFER = "WireTransfer"
    OTHER = "Other"


class PaymentStatus(StrEnum):
    PENDING = "Pending"
    SETTLED = "Settled"
    FAILED = "Failed"
    RETURNED = "Returned"  # e.g. an ACH return after settlement
    REFUNDED = "Refunded"


class PlatformModel(CanonicalModel):
    """A canonical model the core platform owns (not from RESO)."""

    modification_timestamp: AwareDatetime | None = None


class Property(PlatformModel):
    """The physical property (building, house, lot) that listings, units and leases point to."""

    entity_name: ClassVar[str] = "Property"
    key_field: ClassVar[str | None] = "PropertyId"

    property_id: Id
    building_name: str | None = Field(default=None, max_length=50)
    unparsed_address: str | None = Field(default=None, max_length=255)
    street_number: str | None = Field(default=None, max_length=25)
    street_dir_prefix: StreetDirection | None = None
    street_name: str | None = Field(default=None, max_length=50)
    street_suffix: str | None = Field(default=None, max_length=25)
    street_dir_suffix: StreetDirection | None = None
    city: str | None = Field(default=None, max_length=50)
    county_or_parish: str | None = Field(default=None, max_length=50)
    state_or_province: StateOrProvince | None = None
    postal_code: str | None = Field(default=None, max_length=10)
    country: Country | None = None
    latitude: Decimal | None = None
    longitude: Decimal | None = None
    parcel_number: str | None = Field(default=None, max_length=50)
    property_type: PropertyType | None = None
    property_sub_type: PropertySubType | None = None
    year_built: int | None = None
    living_area: Decimal | None = None
    living_area_units: AreaUnits | None = None
    lot_size_area: Decimal | None = None
    lot_size_units: LotSizeUnits | None = None
    number_of_units_total: int | None = None


class Unit(PlatformModel):
    """A rentable unit of a Property."""

    entity_name: ClassVar[str] = "Unit"
    key_field: ClassVar[str | None] = "UnitId"

    unit_id: Id
    property_id: Id | None = None
    unit_number: str | None = Field(default=None, max_length=25)
    unit_status: UnitStatus | None = None
    bedrooms: int | None = Field(default=None, ge=0)
    bathrooms: Decimal | None = Field(default=None, ge=0)  # 1.5 is common
    square_feet: Decimal | None = Field(default=None, ge=0)
    market_rent: Decimal | None = None
    currency: CurrencyCode | None = None


class Lease(PlatformModel):
    """A rental agreement for a Unit, signed by one or more Residents."""

    entity_name: ClassVar[str] = "Lease"
    key_field: ClassVar[str | None] = "LeaseId"

    lease_id: Id
    unit_id: Id | None = None
    property_id: Id | None = None
    resident_ids: list[Id] | None = None
    lease_status: LeaseStatus | None = None
    lease_type: LeaseType | None = None
    start_date: date | None = None
    end_date: date | None = None
    move_in_date: date | None = None
    move_out_date: date | None = None
    rent_amount: Decimal | None = None
    deposit_amount: Decimal | None = None
    currency: CurrencyCode | None = None


class Resident(PlatformModel):
    """A person living in a Unit under a Lease (contact fields use RESO ``Contacts`` names)."""

    entity_name: ClassVar[str] = "Resident"
    key_field: ClassVar[str | None] = "ResidentId"

    resident_id: Id
    lease_id: Id | None = None
    contact_key: Id | None = None  # the same person as a CRM Contact, when known
    first_name: str | None = Field(default=None, max_length=50)
    last_name: str | None = Field(default=None, max_length=50)
    email: str | None = Field(default=None, max_length=80)
    mobile_phone: str | None = Field(default=None, max_length=16)
    home_phone: str | None = Field(default=None, max_length=16)


class LedgerAccount(PlatformModel):
    """An account of the chart of accounts (rent income, security deposits held, ...)."""

    entity_name: ClassVar[str] = "LedgerAccount"
    key_field: ClassVar[str | None] = "LedgerAccountId"

    ledger_account_id: Id
    account_number: str | None = Field(default=None, max_length=50)
    name: str | None = Field(default=None, max_length=255)
    account_type: AccountType | None = None
    currency: CurrencyCode | None = None
    active: bool | None = None


class LedgerEntry(PlatformModel):
    """One posting to a LedgerAccount; ``Amount`` is positive and ``EntryType`` gives the side."""

    entity_name: ClassVar[str] = "LedgerEntry"
    key_field: ClassVar[str | None] = "LedgerEntryId"

    ledger_entry_id: Id
    ledger_account_id: Id | None = None
    lease_id: Id | None = None
    payment_id: Id | None = None
    posted_date: date | None = None
    entry_type: EntryType | None = None
    amount: Decimal | None = Field(default=None, ge=0)
    currency: CurrencyCode | None = None
    memo: str | None = Field(default=None, max_length=1024)
    # Entries are never mutated, only reversed (docs/audit.md): a reversal points at the entry
    # it cancels, that entry at its reversal, and a corrected entry at the one it replaces.
    reverses_entry_id: Id | None = None
    reversed_by_entry_id: Id | None = None
    replaces_entry_id: Id | None = None


class Payment(PlatformModel):
    """Money received from a Resident against a Lease."""

    entity_name: ClassVar[str] = "Payment"
    key_field: ClassVar[str | None] = "PaymentId"

    payment_id: Id
    lease_id: Id | None = None
    resident_id: Id | None = None
    amount: Decimal | None = Field(default=None, ge=0)
    currency: CurrencyCode | None = None
    paid_at: AwareDatetime | None = None
    payment_method: PaymentMethod | None = None
    payment_status: PaymentStatus | None = None


class Deal(PlatformModel):
    """A sales or leasing opportunity in a CRM (a HubSpot deal): who it is with, what it is worth,
    where it stands in its pipeline. ``DealStage`` and ``Pipeline`` are the CRM's own ids: each
    account defines its pipelines, so they are kept as text rather than a lookup."""

    entity_name: ClassVar[str] = "Deal"
    key_field: ClassVar[str | None] = "DealId"

    deal_id: Id
    deal_name: str | None = Field(default=None, max_length=255)
    deal_stage: str | None = Field(default=None, max_length=100)
    amount: Decimal | None = None
    currency: CurrencyCode | None = None
    close_date: AwareDatetime | None = None
    pipeline: str | None = Field(default=None, max_length=100)
    contact_ids: list[Id] | None = None  # the Contacts (ContactKey) it is with
    property_id: Id | None = None
