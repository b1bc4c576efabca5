"""The simulated MLS's Property schema: RESO Data Dictionary 2.0 names (every one also a field of
Cadastre's canonical Listing, copied here as literals because a vendor knows nothing of the hub)
plus a few local fields under the MLS's own prefix, and the CSDL document that describes them.

Lookups are served as the MLS's display spellings ("Active Under Contract", "Single Family
Residence") in Edm.String fields, as many MLSs do; a client maps them to its own enumeration.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

STRING = "Edm.String"
DECIMAL = "Edm.Decimal"
INT32 = "Edm.Int32"
BOOLEAN = "Edm.Boolean"
DATETIMEOFFSET = "Edm.DateTimeOffset"
DATE = "Edm.Date"
DOUBLE = "Edm.Double"

KEY_FIELD = "ListingKey"
TIMESTAMP_FIELD = "ModificationTimestamp"
NAMESPACE = "org.reso.metadata"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    edm: str
    max_length: int | None = None
    precision: int | None = None
    scale: int | None = None


def _s(name: str, max_length: int) -> FieldSpec:
    return FieldSpec(name, STRING, max_length)


def _d(name: str, precision: int, scale: int) -> FieldSpec:
    return FieldSpec(name, DECIMAL, precision=precision, scale=scale)


STANDARD_FIELDS: tuple[FieldSpec, ...] = (
    _s("ListingKey", 255),
    _s("ListingId", 255),
    _s("OriginatingSystemName", 255),
    _s("StandardStatus", 50),
    _s("MlsStatus", 50),
    FieldSpec("ModificationTimestamp", DATETIMEOFFSET),
    FieldSpec("OriginalEntryTimestamp", DATETIMEOFFSET),
    FieldSpec("StatusChangeTimestamp", DATETIMEOFFSET),
    FieldSpec("PriceChangeTimestamp", DATETIMEOFFSET),
    FieldSpec("PhotosChangeTimestamp", DATETIMEOFFSET),
    FieldSpec("ListingContractDate", DATE),
    FieldSpec("OnMarketDate", DATE),
    FieldSpec("PurchaseContractDate", DATE),
    FieldSpec("CloseDate", DATE),
    FieldSpec("ExpirationDate", DATE),
    FieldSpec("DaysOnMarket", INT32),
    _d("ListPrice", 14, 2),
    _d("OriginalListPrice", 14, 2),
    _d("PreviousListPrice", 14, 2),
    _d("ClosePrice", 14, 2),
    _s("PropertyType", 50),
    _s("PropertySubType", 50),
    _s("UnparsedAddress", 255),
    _s("StreetNumber", 25),
    _s("StreetName", 50),
    _s("StreetSuffix", 25),
    _s("UnitNumber", 25),
    _s("City", 50),
    _s("StateOrProvince", 2),
    _s("PostalCode", 10),
    _s("CountyOrParish", 50),
    _s("Country", 2),
    _s("SubdivisionName", 50),
    _s("MLSAreaMajor", 50),
    _d("Latitude", 12, 8),
    _d("Longitude", 12, 8),
    _s("ElementarySchool", 50),
    _s("MiddleOrJuniorSchool", 50),
    _s("HighSchool", 50),
    FieldSpec("YearBuilt", INT32),
    FieldSpec("NewConstructionYN", BOOLEAN),
    FieldSpec("StoriesTotal", INT32),
    FieldSpec("BedroomsTotal", INT32),
    FieldSpec("BathroomsTotalInteger", INT32),
    FieldSpec("BathroomsFull", INT32),
    FieldSpec("BathroomsHalf", INT32),
    _d("LivingArea", 14, 2),
    _s("LivingAreaUnits", 25),
    _d("LotSizeAcres", 14, 4),
    _d("LotSizeSquareFeet", 14, 2),
    FieldSpec("GarageYN", BOOLEAN),
    _d("GarageSpaces", 14, 2),
    FieldSpec("FireplaceYN", BOOLEAN),
    FieldSpec("PoolPrivateYN", BOOLEAN),
    FieldSpec("AssociationYN", BOOLEAN),
    _d("AssociationFee", 14, 2),
    _s("AssociationFeeFrequency", 25),
    _d("TaxAnnualAmount", 14, 2),
    FieldSpec("TaxYear", INT32),
    _s("ParcelNumber", 50),
    _s("Zoning", 25),
    _s("ListAgentKey", 255),
    _s("ListAgentMlsId", 25),
    _s("ListAgentFullName", 150),
    _s("ListAgentEmail", 80),
    _s("ListAgentDirectPhone", 16),
    _s("ListOfficeKey", 255),
    _s("ListOfficeMlsId", 25),
    _s("ListOfficeName", 255),
    _s("ListOfficePhone", 16),
    _s("BuyerAgentKey", 255),
    _s("BuyerAgentFullName", 150),
    _s("PublicRemarks", 4000),
    FieldSpec("PhotosCount", INT32),
    _s("VirtualTourURLUnbranded", 8000),
    FieldSpec("InternetEntireListingDisplayYN", BOOLEAN),
    FieldSpec("InternetAddressDisplayYN", BOOLEAN),
)


def local_fields(prefix: str) -> tuple[FieldSpec, ...]:
    return (
        _s(f"{prefix}SchoolDistrict", 50),
        _s(f"{prefix}HOAName", 100),
        FieldSpec(f"{prefix}Waterfront", BOOLEAN),
        _s(f"{prefix}ShowingInstructions", 1024),
    )


def property_fields(prefix: str) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in (*STANDARD_FIELDS, *local_fields(prefix))}


def metadata_xml(
    fields: dict[str, FieldSpec],
    media: dict[str, FieldSpec] | None = None,
    *,
    media_set: bool = False,
    media_expand: bool = False,
) -> str:
    """An OData v4 CSDL document for the Property entity set, and Media where the MLS has it
    (``media_set``: an entity set of its own; ``media_expand``: a navigation from Property)."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">',
        "<edmx:DataServices>",
        f'<Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="{NAMESPACE}">',
        '<EntityType Name="Property">',
        f'<Key><PropertyRef Name="{KEY_FIELD}"/></Key>',
        *(_property(spec, KEY_FIELD) for spec in fields.values()),
    ]
    if media is not None and media_expand:
        lines.append(f'<NavigationProperty Name="Media" Type="Collection({NAMESPACE}.Media)"/>')
    lines.append("</EntityType>")
    if media is not None and (media_set or media_expand):
        lines += [
            '<EntityType Name="Media">',
            '<Key><PropertyRef Name="MediaKey"/></Key>',
            *(_property(spec, "MediaKey") for spec in media.values()),
            "</EntityType>",
        ]
    lines += [
        '<EntityContainer Name="Default">',
        f'<EntitySet Name="Property" EntityType="{NAMESPACE}.Property"/>',
        *(
            [f'<EntitySet Name="Media" EntityType="{NAMESPACE}.Media"/>']
            if media is not None and media_set
            else []
        ),
        "</EntityContainer>",
        "</Schema>",
        "</edmx:DataServices>",
        "</edmx:Edmx>",
    ]
    return "\n".join(lines) + "\n"


def _property(spec: FieldSpec, key: str) -> str:
    attributes = [f"Name={quoteattr(spec.name)}", f'Type="{spec.edm}"']
    if spec.name == key:
        attributes.append('Nullable="false"')
    if spec.max_length is not None:
        attributes.append(f'MaxLength="{spec.max_length}"')
    if spec.precision is not None:
        attributes.append(f'Precision="{spec.precision}" Scale="{spec.scale}"')
    return f"<Property {' '.join(attributes)}/>"
