"""``/reso/odata`` against RESO's and OASIS's own artifacts in shared/: the Web API Core
certification requests as the reference file lists them, ``$metadata`` against the OASIS CSDL
XSDs and a semantic check that refuses the commander's bad EDMX samples, and our answers against
the commander's good and bad payload samples.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import xmlschema

from cadastre.api.reso.edm import EdmProperty, resources
from cadastre.api.reso.filters import compile_filter, read_value
from cadastre.api.reso.metadata import metadata_xml
from cadastre.testing import FakeClock
from tests.unit.api import conftest as api_fixtures
from tests.unit.api.conftest import World
from tests.unit.api.reso_cases import REQUESTS, SEED, check, shaped, url_of

pytestmark = pytest.mark.reference

URI = "http://api.test/reso/odata"
EDM = "http://docs.oasis-open.org/odata/ns/edm"
EDMX = "http://docs.oasis-open.org/odata/ns/edmx"
# the API tests' hub and in-process client (SQLite in a temporary folder, keys for two tenants)
hub = api_fixtures.hub
world = api_fixtures.world


def commander(shared_dir: Path) -> Path:
    return shared_dir / "reso" / "cert-samples" / "web-api-commander"


def reference_requests(shared_dir: Path) -> dict[str, str]:
    """RequestId -> Url of reference-web-api-core-requests.xml, in the project's placeholder
    syntax (``{uri}``, ``{Name}``). The file's 400 request lacks the leading ``*`` of its root."""
    text = (commander(shared_dir) / "reference-web-api-core-requests.xml").read_text()
    tree = ElementTree.fromstring(re.sub(r"<!DOCTYPE.*?]>", "", text, flags=re.S))  # noqa: S314
    out = {}
    for request in tree.iter("Request"):
        url = request.attrib["Url"].replace("*ClientSettings_WebAPIURI*", "{uri}")
        url = url.replace("ClientSettings_WebAPIURI*", "{uri}")
        out[request.attrib["RequestId"]] = re.sub(r"\*Parameter_(\w+)\*", r"{\1}", url)
    return out


def test_the_projects_copy_of_the_core_requests_is_the_reference(shared_dir: Path) -> None:
    assert reference_requests(shared_dir) == REQUESTS


async def test_every_core_request_of_the_reference_file(world: World, shared_dir: Path) -> None:
    for key, fields in SEED.items():
        await world.listing(key, **fields)
    for request_id, template in reference_requests(shared_dir).items():
        response = await world.client.get(url_of(template, URI), headers=world.auth())
        if request_id == "metadata-request":
            assert response.status_code == 200
            csdl_problems(response.content)  # parses
            continue
        try:
            check(request_id, response.status_code, response.json())
        except AssertionError as exc:
            raise AssertionError(f"{request_id}: {exc}") from exc


# ---------------------------------------------------------------------------------- $metadata


@pytest.fixture(scope="module")
def csdl_schema(shared_dir: Path) -> xmlschema.XMLSchema:
    folder = shared_dir / "reso" / "odata-csdl-xsd"
    return xmlschema.XMLSchema(
        folder / "edmx.4.0.errata03.xsd", locations={EDM: str(folder / "edm.4.0.errata03.xsd")}
    )


def test_metadata_validates_against_the_oasis_csdl_xsds(csdl_schema: xmlschema.XMLSchema) -> None:
    csdl_schema.validate(metadata_xml().decode())
    # the validator is not blind: a property without its required Type fails
    broken = metadata_xml().decode().replace(' Type="Edm.Int64"', "", 1)
    assert not csdl_schema.is_valid(broken)


def csdl_problems(document: bytes) -> list[str]:
    """What the XSDs cannot see: each entity type has a key naming one of its properties, and
    each entity set names a declared entity type (and each binding a declared set)."""
    root = ElementTree.fromstring(document)  # noqa: S314 - our own output and RESO's samples
    problems = []
    declared = set()
    for schema in root.iter(f"{{{EDM}}}Schema"):
        for entity in schema.iter(f"{{{EDM}}}EntityType"):
            name = f"{schema.attrib['Namespace']}.{entity.attrib['Name']}"
            declared.add(name)
            properties = {p.attrib["Name"] for p in entity.iter(f"{{{EDM}}}Property")}
            refs = [r.attrib["Name"] for r in entity.iter(f"{{{EDM}}}PropertyRef")]
            if not refs:
                problems.append(f"{name} has no key")
            problems += [f"{name}: key {r} is not a property" for r in refs if r not in properties]
    sets = {s.attrib["Name"]: s for s in root.iter(f"{{{EDM}}}EntitySet")}
    for name, entity_set in sets.items():
        if entity_set.attrib["EntityType"] not in declared:
            problems.append(f"set {name}: no entity type {entity_set.attrib['EntityType']}")
        for binding in entity_set.iter(f"{{{EDM}}}NavigationPropertyBinding"):
            if binding.attrib["Target"] not in sets:
                problems.append(f"set {name}: binding target {binding.attrib['Target']} unknown")
    return problems


def test_our_metadata_is_sound_and_declares_lookup_style_enumerations() -> None:
    assert csdl_problems(metadata_xml()) == []
    root = ElementTree.fromstring(metadata_xml())  # noqa: S314
    assert not list(root.iter(f"{{{EDM}}}EnumType"))  # Lookup-resource style: no enum types
    names = {s.attrib["Name"] for s in root.iter(f"{{{EDM}}}EntitySet")}
    assert {"Property", "Member", "Office", "Media", "Lookup"} == names


def test_our_metadata_matches_the_dd_lookup_resource_style(shared_dir: Path) -> None:
    """Every field we serve has the DD's type in dd-2.0-lookup-resource.xml (our integers are
    Edm.Int64 where the DD says Int32 or Int64), and the same LookupName annotation."""
    reference = shared_dir / "reso" / "dd-2.0" / "dd-2.0-lookup-resource.xml"
    dd = ElementTree.parse(reference).getroot()  # noqa: S314
    ours = ElementTree.fromstring(metadata_xml())  # noqa: S314

    def fields(root: ElementTree.Element, entity: str) -> dict[str, tuple[str, str | None]]:
        found = next(e for e in root.iter(f"{{{EDM}}}EntityType") if e.attrib["Name"] == entity)
        out = {}
        for prop in found.iter(f"{{{EDM}}}Property"):
            lookup = next((a.attrib["String"] for a in prop.iter(f"{{{EDM}}}Annotation")), None)
            kind = re.sub(r"Edm\.Int(16|32)", "Edm.Int64", prop.attrib["Type"])
            out[prop.attrib["Name"]] = (kind, lookup)
        return out

    for entity in ("Property", "Member", "Office", "Media", "Lookup"):
        expected, served = fields(dd, entity), fields(ours, entity)
        for name, (kind, lookup) in served.items():
            assert name in expected, f"{entity}.{name} is not in the DD"
            assert expected[name][0] == kind, f"{entity}.{name}"
            if lookup is not None:
                assert expected[name][1] == lookup, f"{entity}.{name}"


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        ("bad-edmx-no-keyfield.xml", "has no key"),
        ("bad-edmx-wrong-edm-binding-target.xml", "no entity type"),
    ],
)
def test_the_commanders_bad_edmx_is_refused(shared_dir: Path, sample: str, problem: str) -> None:
    problems = csdl_problems((commander(shared_dir) / sample).read_bytes())
    assert any(problem in p for p in problems), problems


def test_unparsable_edmx_is_refused(shared_dir: Path, csdl_schema: xmlschema.XMLSchema) -> None:
    # a stray character after the schemas: well-formed XML, but not CSDL (no mixed content)
    sample = commander(shared_dir) / "bad-edmx-unparsable-xml.xml"
    assert not csdl_schema.is_valid(str(sample))


# ------------------------------------------------------------------------------------ payloads

# The commander's samples use AccessibilityFeatures, a DD field our contract does not carry; the
# payload validator checks them against our Property resource plus that one field.
PROPERTY = resources()["Property"]
SAMPLE_RESOURCE = replace(
    PROPERTY,
    properties={
        **PROPERTY.properties,
        "AccessibilityFeatures": EdmProperty("AccessibilityFeatures", "Edm.String", True),
    },
)
VISITABLE = "'Visitable'"


def payload_problems(body: Any, condition: str | None = None) -> Iterator[str]:
    """Why a collection answer is wrong: its shape, a value not of its property's type, or a
    record that does not satisfy the request's ``$filter``."""
    try:
        shaped(body)
    except AssertionError:
        yield "not shaped like an OData collection"
        return
    predicate = compile_filter(condition, SAMPLE_RESOURCE, FakeClock().now) if condition else None
    for index, item in enumerate(body["value"]):
        for name, value in item.items():
            prop = SAMPLE_RESOURCE.properties.get(name)
            if prop is None:
                yield f"value[{index}]: {name} is not a property"
            elif prop.collection and not isinstance(value, list):
                yield f"value[{index}]: {name} must be a list"
            elif (
                value is not None
                and not prop.collection
                and read_value(prop, value) is None
                and not (prop.edm == "Edm.Decimal" and isinstance(value, float))
            ):
                yield f"value[{index}]: {name} is not an {prop.edm}"
        if predicate is not None and not predicate.predicate(item):
            yield f"value[{index}] does not satisfy {condition}"


SAMPLES = [
    ("good-property-payload.json", None, True),
    ("good-property-payload-null.json", None, True),
    ("good-property-payload-count.json", None, True),
    ("good-property-payload-any-collection.json", f"AccessibilityFeatures/any(a: a eq {VISITABLE})",
     True),
    ("good-property-payload-all-collection.json", f"AccessibilityFeatures/all(a: a eq {VISITABLE})",
     True),
    ("bad-property-payload-any-collection.json", f"AccessibilityFeatures/any(a: a eq {VISITABLE})",
     False),
    ("bad-property-payload-all-collection.json", f"AccessibilityFeatures/all(a: a eq {VISITABLE})",
     False),
]  # fmt: skip


@pytest.mark.parametrize(("sample", "condition", "good"), SAMPLES)
def test_the_payload_validator_on_the_commanders_samples(
    shared_dir: Path, sample: str, condition: str | None, good: bool
) -> None:
    body = json.loads((commander(shared_dir) / sample).read_text())
    problems = list(payload_problems(body, condition))
    assert (problems == []) is good, problems


async def test_our_answers_pass_the_payload_validator(world: World) -> None:
    for key, fields in SEED.items():
        await world.listing(key, **fields)
    for condition in (
        None, "Appliances/any(a: a eq 'Dryer')", "Appliances/all(a: a eq 'Dishwasher')",
        "BedroomsTotal gt 1 and ListPrice le 1234567.89", "StandardStatus eq 'Active'",
    ):  # fmt: skip
        params = {"$count": "true"} | ({"$filter": condition} if condition else {})
        response = await world.get("/reso/odata/Property", **params)
        body = response.json()
        assert isinstance(body["@odata.count"], int)
        assert list(payload_problems(body, condition)) == [], condition
    # and the validator is not blind to our answers: an answer with one record too many fails
    everything = (await world.get("/reso/odata/Property")).json()
    assert list(payload_problems(everything, "StandardStatus eq 'Active'"))
