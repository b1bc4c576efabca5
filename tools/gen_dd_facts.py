"""Generate ``src/cadastre/mapping/dd_facts.json``: the RESO Data Dictionary 2.0 facts that mapping
checks need, from the reference metadata in shared/.

    python tools/gen_dd_facts.py                 # rewrite the committed file
    python tools/gen_dd_facts.py --dd FILE       # read this dd-2.0.json instead
    python tools/gen_dd_facts.py --out FILE      # write FILE instead (the reference test does)

Input: ``--dd``, else ``<shared>/reso/dd-2.0/dd-2.0.json`` (``CADASTRE_SHARED_DIR``, default the
``shared`` folder beside the repository). Only facts are kept (names, types, lookup names,
payloads, lookup values and their standard names): the DD's definitions and wiki links stay in
shared/, as for ``tools/gen_contract.py``, because the RESO EULA does not let us redistribute them.

The file holds, per resource, field -> ``{"type": ..., "lookup": ..., "many": ..., "payloads":
[...]}`` (keys left out when empty) and, per lookup, value -> standard name. One resource or
lookup per line, so that a regenerated file diffs readably.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "cadastre" / "mapping" / "dd_facts.json"
ENUM_PREFIX = "org.reso.metadata.enums."
STANDARD_NAME = "RESO.OData.Metadata.StandardName"


def shared_dir() -> Path:
    return Path(os.environ.get("CADASTRE_SHARED_DIR", ROOT.parent / "shared")).resolve()


def facts(dd: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in dd["resources"]}
    for field in dd["fields"]:
        kind: str = field["type"]
        entry: dict[str, Any] = {}
        if kind.startswith(ENUM_PREFIX):
            entry["type"] = "lookup"
            entry["lookup"] = kind.removeprefix(ENUM_PREFIX)
        else:
            entry["type"] = kind.removeprefix("Edm.")
        if field.get("isCollection"):
            entry["many"] = True
        payloads = [p.strip() for p in (field.get("payloads") or "").split(",") if p.strip()]
        if payloads:
            entry["payloads"] = payloads
        resources.setdefault(field["resourceName"], {})[field["fieldName"]] = entry
    lookups: dict[str, dict[str, str]] = {}
    for item in dd["lookups"]:
        notes = {a["term"]: a["value"] for a in item.get("annotations", [])}
        value = item["lookupValue"]
        name = item["lookupName"].removeprefix(ENUM_PREFIX)
        lookups.setdefault(name, {})[value] = notes.get(STANDARD_NAME, value)
    return {
        "source": {"dictionary": dd["version"], "generated_on": dd["generatedOn"]},
        "resources": {k: dict(sorted(v.items())) for k, v in sorted(resources.items())},
        "lookups": {k: dict(sorted(v.items())) for k, v in sorted(lookups.items())},
    }


def render(data: dict[str, Any]) -> str:
    def one(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    lines = ["{", f'"source":{one(data["source"])},']
    for section in ("resources", "lookups"):
        items = list(data[section].items())
        lines.append(f'"{section}":{{')
        lines.extend(
            f"{one(name)}:{one(value)}{',' if i < len(items) - 1 else ''}"
            for i, (name, value) in enumerate(items)
        )
        lines.append("}," if section == "resources" else "}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dd", type=Path, help="dd-2.0.json (default: from the shared folder)")
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    source = args.dd or shared_dir() / "reso" / "dd-2.0" / "dd-2.0.json"
    if not source.is_file():
        raise SystemExit(f"{source} not found (give --dd or set CADASTRE_SHARED_DIR)")
    dd = json.loads(source.read_text(encoding="utf-8"))
    args.out.write_text(render(facts(dd)), encoding="utf-8")


if __name__ == "__main__":
    main()
