"""The demo's mapping file in the repository is the one the demo writes elsewhere, and it loads."""

from __future__ import annotations

from cadastre.cli.demo import MAPPING, MLS
from cadastre.connectors.mls.reso import CONNECTOR
from cadastre.mapping import MappingRegistry
from tests.conftest import PROJECT_ROOT


def test_the_committed_demo_mapping_is_the_demo_template() -> None:
    folder = PROJECT_ROOT / "mappings"
    assert (folder / f"{MLS}.yaml").read_text(encoding="utf-8") == MAPPING
    mapper = MappingRegistry(folder, {"mls/reso": CONNECTOR.family_mapping}).load(MLS)
    assert mapper.entity == "Listing"
    assert mapper.spec.local_prefixes == ["ACT_"]
