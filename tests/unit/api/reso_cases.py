"""The records and expected answers behind the RESO endpoint's tests: the Web API Core
certification requests, with parameters chosen for this seed (the commander's resoscript
parameters, in Lookup-resource style: enumeration values are plain quoted strings).

Expected answers were worked out by hand from ``SEED``, not computed by the code under test.
A null never satisfies ``gt``/``ge``/``lt``/``le`` and satisfies ``ne`` against a value; an
absent collection is empty, so ``all`` holds for it.
"""

from __future__ import annotations

import re
from typing import Any

V = "2019-12-31T23:55:55-09:00"  # = 2020-01-01T08:55:55Z; the clock's now() is 2026-01-01

SEED: dict[str, dict[str, Any]] = {
    "abc123": {"BedroomsTotal": 5, "ListPrice": "100000.00", "ListingContractDate": "2020-04-02",
               "OriginalEntryTimestamp": "2020-04-02T02:02:02.02Z",
               "StandardStatus": "ActiveUnderContract", "Appliances": ["Dishwasher", "Dryer"]},
    "L2": {"BedroomsTotal": 1, "ListPrice": "0.00", "ListingContractDate": "2019-12-31",
           "OriginalEntryTimestamp": "2020-01-01T08:55:55Z", "StandardStatus": "Active",
           "Appliances": ["Dryer"]},
    "L3": {"BedroomsTotal": 20, "ListPrice": "1234567.89", "ListingContractDate": "2019-01-15",
           "OriginalEntryTimestamp": "2019-06-01T00:00:00Z", "StandardStatus": "Closed",
           "Appliances": []},
    "L4": {"ListPrice": "2000000", "OriginalEntryTimestamp": "2030-01-01T00:00:00Z",
           "StandardStatus": "ActiveUnderContract"},
    "L5": {"BedroomsTotal": 15, "ListingContractDate": "2021-01-01", "Appliances": ["Dishwasher"]},
    "L6": {"BedroomsTotal": 3, "ListPrice": "350000.5", "ListingContractDate": "2019-12-31",
           "OriginalEntryTimestamp": V, "StandardStatus": "Pending",
           "Appliances": ["Dishwasher", "Dryer", "Refrigerator"]},
    "L7": {"BedroomsTotal": 2, "ListPrice": "99.99", "ListingContractDate": "2019-12-30",
           "OriginalEntryTimestamp": "2019-12-31T23:55:54-09:00", "StandardStatus": "Active",
           "Appliances": ["Microwave"]},
}  # fmt: skip
ALL = frozenset(SEED)

# The commander's parameters for this seed (sample-web-api-server.core.resoscript's names).
PARAMETERS = {
    "EndpointResource": "Property",
    "KeyField": "ListingKey",
    "KeyValue": "'abc123'",
    "IntegerField": "BedroomsTotal",
    "DecimalField": "ListPrice",
    "DateField": "ListingContractDate",
    "TimestampField": "OriginalEntryTimestamp",
    "SingleValueLookupField": "StandardStatus",
    "SingleValueLookupValue": "'ActiveUnderContract'",
    "MultipleValueLookupField": "Appliances",
    "MultipleValueLookupValue1": "'Dishwasher'",
    "MultipleValueLookupValue2": "'Dryer'",
    "IntegerValueLow": "1",
    "IntegerValueHigh": "15",
    "DecimalValueLow": "0.00",
    "DecimalValueHigh": "1234567.89",
    "FilterNotField": "BedroomsTotal",
    "FilterNotValue": "-1",
    "DateTimeValue": V,
    "DateValue": "2019-12-31",
    "TopCount": "5",
    "SortCount": "20",
    "400BadRequest": "Property?$filter=BadField eq 'SoBad'",
    "404NotFound": "ResourceNotFound",
}
TOP = int(PARAMETERS["TopCount"])

# RequestId -> the keys whose records satisfy the request's $filter (before $top)
FILTERED: dict[str, frozenset[str]] = {
    "filter-int-and": frozenset({"abc123", "L6", "L7"}),
    "filter-int-or": frozenset({"abc123", "L2", "L3", "L5", "L6", "L7"}),
    "filter-int-not": ALL,
    "filter-int-eq": frozenset({"L2"}),
    "filter-int-ne": ALL - {"L2"},
    "filter-int-gt": frozenset({"abc123", "L3", "L5", "L6", "L7"}),
    "filter-int-ge": frozenset({"abc123", "L2", "L3", "L5", "L6", "L7"}),
    "filter-int-lt": frozenset(),
    "filter-int-le": frozenset({"L2"}),
    "filter-decimal-eq": frozenset({"L2"}),
    "filter-decimal-ne": ALL - {"L2"},
    "filter-decimal-gt": frozenset({"abc123", "L3", "L4", "L6", "L7"}),
    "filter-decimal-ge": frozenset({"abc123", "L2", "L3", "L4", "L6", "L7"}),
    "filter-decimal-lt": frozenset({"abc123", "L2", "L6", "L7"}),
    "filter-decimal-le": frozenset({"abc123", "L2", "L3", "L6", "L7"}),
    "filter-date-eq": frozenset({"L2", "L6"}),
    "filter-date-ne": frozenset({"abc123", "L3", "L4", "L5", "L7"}),
    "filter-date-gt": frozenset({"abc123", "L5"}),
    "filter-date-ge": frozenset({"abc123", "L2", "L5", "L6"}),
    "filter-date-lt": frozenset({"L3", "L7"}),
    "filter-date-le": frozenset({"L2", "L3", "L6", "L7"}),
    "filter-datetime-eq": frozenset({"L2", "L6"}),
    "filter-datetime-ne": frozenset({"abc123", "L3", "L4", "L5", "L7"}),
    "filter-datetime-gt": frozenset({"abc123", "L4"}),
    "filter-datetime-ge": frozenset({"abc123", "L2", "L4", "L6"}),
    "filter-datetime-lt": frozenset({"abc123", "L2", "L3", "L6", "L7"}),  # lt now()
    "filter-datetime-le": frozenset({"abc123", "L2", "L3", "L6", "L7"}),  # le now()
    "filter-enum-single-eq": frozenset({"abc123", "L4"}),
    "filter-enum-single-ne": frozenset({"L2", "L3", "L5", "L6", "L7"}),
    "filter-coll-enum-any": frozenset({"abc123", "L5", "L6"}),
    "filter-coll-enum-all": frozenset({"L3", "L4", "L5"}),
    # sorted requests filter too
    "orderby-timestamp-asc-filter-int-gt": frozenset({"abc123", "L3", "L5", "L6", "L7"}),
    "orderby-timestamp-desc-filter-int-gt": frozenset({"abc123", "L3", "L5", "L6", "L7"}),
    "orderby-timestamp-asc": ALL,
    "orderby-timestamp-desc": ALL,
}
# The Lookup-resource style has no enumeration types, so no `has`: a clear 400.
REFUSED = {"filter-enum-single-has", "filter-enum-multi-has", "filter-enum-multi-has-and"}
# The instant each seed record's OriginalEntryTimestamp means, as sortable UTC text (None: null)
ORDER_UTC = {
    "abc123": "2020-04-02T02:02:02.020", "L2": "2020-01-01T08:55:55", "L3": "2019-06-01T00:00:00",
    "L4": "2030-01-01T00:00:00", "L5": None, "L6": "2020-01-01T08:55:55",
    "L7": "2020-01-01T08:55:54",
}  # fmt: skip

# The Web API Core reference requests (web-api-commander's reference-web-api-core-requests.xml),
# copied so a clone without ../shared still runs them; the reference test holds the copy equal
# to the file. ``{uri}`` is the service root, ``{Name}`` the commander's *Parameter_Name*.
REQUESTS: dict[str, str] = {
    "metadata-request": "{uri}/$metadata?$format=application/xml",
    "service-document": "{uri}/",
    "fetch-by-key": "{uri}/{EndpointResource}({KeyValue})?$select={KeyField}",
    "select": "{uri}/{EndpointResource}?$select={KeyField},{IntegerField}",
    "top": "{uri}/{EndpointResource}?$select={KeyField}&$top={TopCount}",
    "skip": "{uri}/{EndpointResource}?$select={KeyField}&$top={TopCount}",
    "count": "{uri}/{EndpointResource}?$count=true",
    "orderby-timestamp-asc": (
        "{uri}/{EndpointResource}?$top={SortCount}"
        "&$select={KeyField},{IntegerField},{TimestampField}"
        "&$orderby={TimestampField} asc"
    ),
    "orderby-timestamp-desc": (
        "{uri}/{EndpointResource}?$top={SortCount}"
        "&$select={KeyField},{IntegerField},{TimestampField}"
        "&$orderby={TimestampField} desc"
    ),
    "orderby-timestamp-asc-filter-int-gt": (
        "{uri}/{EndpointResource}?$top={SortCount}"
        "&$select={KeyField},{IntegerField},{TimestampField}"
        "&$orderby={TimestampField} asc&$filter={IntegerField} gt {IntegerValueLow}"
    ),
    "orderby-timestamp-desc-filter-int-gt": (
        "{uri}/{EndpointResource}?$top={SortCount}"
        "&$select={KeyField},{IntegerField},{TimestampField}"
        "&$orderby={TimestampField} desc&$filter={IntegerField} gt {IntegerValueLow}"
    ),
    "filter-int-and": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} gt {IntegerValueLow} and {IntegerField} lt {IntegerValueHigh}"
    ),
    "filter-int-or": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} lt {IntegerValueHigh} or {IntegerField} gt {IntegerValueLow}"
    ),
    "filter-int-not": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter=not ({FilterNotField} le {FilterNotValue})"
    ),
    "filter-int-eq": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} eq {IntegerValueLow}"
    ),
    "filter-int-ne": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} ne {IntegerValueLow}"
    ),
    "filter-int-gt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} gt {IntegerValueLow}"
    ),
    "filter-int-ge": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} ge {IntegerValueLow}"
    ),
    "filter-int-lt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} lt {IntegerValueLow}"
    ),
    "filter-int-le": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{IntegerField}"
        "&$filter={IntegerField} le {IntegerValueLow}"
    ),
    "filter-decimal-eq": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} eq {DecimalValueLow}"
    ),
    "filter-decimal-ne": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} ne {DecimalValueLow}"
    ),
    "filter-decimal-gt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} gt {DecimalValueLow}"
    ),
    "filter-decimal-ge": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} ge {DecimalValueLow}"
    ),
    "filter-decimal-lt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} lt {DecimalValueHigh}"
    ),
    "filter-decimal-le": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DecimalField}"
        "&$filter={DecimalField} le {DecimalValueHigh}"
    ),
    "filter-date-eq": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} eq {DateValue}"
    ),
    "filter-date-ne": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} ne {DateValue}"
    ),
    "filter-date-gt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} gt {DateValue}"
    ),
    "filter-date-ge": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} ge {DateValue}"
    ),
    "filter-date-lt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} lt {DateValue}"
    ),
    "filter-date-le": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{DateField}"
        "&$filter={DateField} le {DateValue}"
    ),
    "filter-datetime-eq": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} eq {DateTimeValue}"
    ),
    "filter-datetime-ne": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} ne {DateTimeValue}"
    ),
    "filter-datetime-gt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} gt {DateTimeValue}"
    ),
    "filter-datetime-ge": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} ge {DateTimeValue}"
    ),
    "filter-datetime-lt": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} lt now()"
    ),
    "filter-datetime-le": (
        "{uri}/{EndpointResource}?$top={TopCount}&$select={KeyField},{TimestampField}"
        "&$filter={TimestampField} le now()"
    ),
    "filter-enum-single-has": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{SingleValueLookupField}"
        "&$filter={SingleValueLookupField} has {SingleValueLookupValue}"
    ),
    "filter-enum-single-eq": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{SingleValueLookupField}"
        "&$filter={SingleValueLookupField} eq {SingleValueLookupValue}"
    ),
    "filter-enum-single-ne": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{SingleValueLookupField}"
        "&$filter={SingleValueLookupField} ne {SingleValueLookupValue}"
    ),
    "filter-enum-multi-has": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{MultipleValueLookupField}"
        "&$filter={MultipleValueLookupField} has {MultipleValueLookupValue1}"
    ),
    "filter-enum-multi-has-and": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{MultipleValueLookupField}"
        "&$filter={MultipleValueLookupField} has {MultipleValueLookupValue1}"
        " and {MultipleValueLookupField} has {MultipleValueLookupValue2}"
    ),
    "filter-coll-enum-any": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{MultipleValueLookupField}"
        "&$filter={MultipleValueLookupField}/any(enum:enum eq {MultipleValueLookupValue1})"
    ),
    "filter-coll-enum-all": (
        "{uri}/{EndpointResource}?$top={TopCount}"
        "&$select={KeyField},{MultipleValueLookupField}"
        "&$filter={MultipleValueLookupField}/all(enum:enum eq {MultipleValueLookupValue1})"
    ),
    "response-code-400": "{uri}/{400BadRequest}",
    "response-code-404": "{uri}/{404NotFound}",
}


def url_of(template: str, uri: str, **overrides: str) -> str:
    """A request's URL for this seed: parameters substituted until none is left (the
    commander's parameters refer to each other), unencoded as the commander writes them."""
    values = {**PARAMETERS, **overrides}
    text = template.replace("{uri}", uri)
    for _ in range(5):
        text = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], text)
    return text


def check(request_id: str, status: int, body: Any, *, top: int = TOP) -> None:
    """What the answer to one reference request must be, for ``SEED``."""
    if request_id in REFUSED or request_id in ("response-code-400", "response-code-404"):
        code = 404 if request_id == "response-code-404" else 400
        assert status == code, body
        assert set(body) == {"error"}
        assert {"code", "message"} <= body["error"].keys()
        assert body["error"]["code"] == str(code)
        return
    assert status == 200, body
    if request_id == "service-document":
        names = {item["name"] for item in body["value"]}
        assert {"Property", "Member", "Office", "Media"} <= names  # WebAPI102 required resources
        assert body["@odata.context"].endswith("/$metadata")
        return
    if request_id == "fetch-by-key":
        assert body["ListingKey"] == "abc123"
        assert set(body) == {"@odata.context", "ListingKey"}
        assert body["@odata.context"].endswith("/$metadata#Property/$entity")
        return
    shaped(body)
    keys = [item["ListingKey"] for item in body["value"]]
    assert len(set(keys)) == len(keys)
    if request_id == "count":
        assert body["@odata.count"] == len(SEED) == len(keys)
    elif request_id == "select":
        assert sorted(keys) == sorted(SEED)
        for item in body["value"]:
            assert set(item) == {"ListingKey", "BedroomsTotal"}
            assert item["BedroomsTotal"] == SEED[item["ListingKey"]].get("BedroomsTotal")
    elif request_id in ("top", "skip"):
        assert len(keys) == min(top, len(SEED))
        assert all(set(item) == {"ListingKey"} for item in body["value"])
    else:
        expected = FILTERED[request_id]
        limit = int(PARAMETERS["SortCount"]) if request_id.startswith("orderby") else top
        assert set(keys) <= expected
        assert len(keys) == min(limit, len(expected))
        if request_id.startswith("orderby"):
            instants = [ORDER_UTC[key] for key in keys]
            nulls = [i for i in instants if i is None]
            values = [i for i in instants if i is not None]
            if "desc" in request_id:  # nulls last, descending
                assert instants == values + nulls
                assert values == sorted(values, reverse=True)
            else:
                assert instants == nulls + values
                assert values == sorted(values)


def shaped(body: Any) -> None:
    """The shape of the commander's good collection payloads: an ``@odata.context``, a ``value``
    list of objects, an integer ``@odata.count`` when there is one, nothing else at the top but
    ``@odata.nextLink``."""
    assert isinstance(body, dict)
    assert isinstance(body.get("@odata.context"), str)
    assert isinstance(body.get("value"), list)
    assert all(isinstance(item, dict) for item in body["value"])
    if "@odata.count" in body:
        count = body["@odata.count"]
        assert isinstance(count, int) or (isinstance(count, str) and count.isdigit())
    assert set(body) <= {"@odata.context", "@odata.count", "@odata.nextLink", "value"}
