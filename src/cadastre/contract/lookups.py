"""Display names of enumeration values.

Wire values are the RESO lookup values (``ActiveUnderContract``); people read the Data
Dictionary's StandardName (``Active Under Contract``). Cadastre's own enumerations follow the same
PascalCase convention and have no StandardName, so their display name is the value's words.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cadastre.contract.reso import STANDARD_NAMES

if TYPE_CHECKING:
    from enum import StrEnum


def display_name(value: StrEnum) -> str:
    """``display_name(StandardStatus.ACTIVE_UNDER_CONTRACT) == "Active Under Contract"``."""
    standard = STANDARD_NAMES.get(type(value))
    if standard is not None:
        # RESO lookups list only the names that differ from the value itself.
        return standard.get(value.value, value.value)
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", value.value)
