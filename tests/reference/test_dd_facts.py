"""The committed Data Dictionary facts are what the generator makes from the RESO reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cadastre.contract import Listing, field_names
from cadastre.mapping.dd import data_dictionary
from tests.conftest import PROJECT_ROOT

COMMITTED = PROJECT_ROOT / "src" / "cadastre" / "mapping" / "dd_facts.json"


def test_the_committed_facts_are_regenerated_unchanged(shared_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dd_facts.json"
    subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tools" / "gen_dd_facts.py"), "--out", str(out),
         "--dd", str(shared_dir / "reso" / "dd-2.0" / "dd-2.0.json")],
        check=True, timeout=60,
    )  # fmt: skip
    assert out.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8"), (
        "dd_facts.json is stale: run python tools/gen_dd_facts.py"
    )


def test_the_facts_know_the_contract_listing_fields() -> None:
    dd = data_dictionary()
    assert dd.version == "2.0"
    property_fields = dd.fields("Property")
    # every canonical Listing field but Cadastre's own is a DD Property field
    ours = field_names("Listing") - Listing.cadastre_fields - {"LocalFields"}
    assert ours <= property_fields
    assert len(property_fields) > len(ours)  # the DD has more than the contract carries
    assert dd.lookup_of("Property", "StandardStatus") == "StandardStatus"
    assert dd.lookups["StandardStatus"]["ActiveUnderContract"] == "Active Under Contract"
    assert dd.resources["Property"]["ListingTerms"]["many"] is True
    assert dd.fields("NoSuchResource") == frozenset()
