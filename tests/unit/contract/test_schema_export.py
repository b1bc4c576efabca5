"""The committed ``schemas/v1/`` must be what the models generate today."""

from __future__ import annotations

import json
from pathlib import Path

from cadastre.contract import ENTITY_MODELS, export_json_schemas

COMMITTED = Path(__file__).resolve().parents[3] / "schemas" / "v1"


def test_committed_schemas_are_up_to_date(tmp_path: Path) -> None:
    export_json_schemas(tmp_path)
    fresh = {p.name: p.read_bytes() for p in tmp_path.glob("*.json")}
    committed = {p.name: p.read_bytes() for p in COMMITTED.glob("*.json")}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    assert not stale, f"schemas/v1 is stale ({', '.join(stale)}); run `cadastre schema export`"


def test_export_is_deterministic_and_self_describing(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export_json_schemas(tmp_path / "b")}
    assert first == second
    assert sorted(first) == sorted(f"{entity}.json" for entity in ENTITY_MODELS)
    listing = json.loads(first["Listing.json"])
    assert listing["$id"] == "urn:cadastre:schema:v1:Listing"
    assert listing["x-schema-version"] == "1.0.0"
    assert listing["x-key-field"] == "ListingKey"
    assert listing["required"] == ["ListingKey"]
    assert first["Listing.json"].endswith(b"}\n")
