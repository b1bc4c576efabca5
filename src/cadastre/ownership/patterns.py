"""Rule patterns: ``Entity.Field`` where the entity is a name or ``*`` and the field is a wire name
or a glob (``*`` any run of characters, ``?`` one character).

Specificity decides between rules that match the same field, compared as a tuple: an exact entity
beats ``*``; then an exact field beats a glob; then, among globs, more literal characters win
(``Listing.List*`` beats ``Listing.*``). Equal tuples are a tie, which the registry refuses to load
when the tied rules disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_GLOB = re.compile(r"^[A-Za-z0-9_*?]+$")
WILDCARDS = frozenset("*?")


@dataclass(frozen=True)
class Pattern:
    text: str
    entity: str | None  # None: any entity ("*")
    field: str  # a wire name or a glob

    @property
    def field_is_glob(self) -> bool:
        return any(c in WILDCARDS for c in self.field)

    @property
    def specificity(self) -> tuple[int, int, int]:
        literal = sum(1 for c in self.field if c not in WILDCARDS)
        return (self.entity is not None, not self.field_is_glob, literal)

    def matches_entity(self, entity: str) -> bool:
        return self.entity is None or self.entity == entity

    def matches(self, entity: str, field: str) -> bool:
        if not self.matches_entity(entity):
            return False
        if self.field_is_glob:
            return fnmatchcase(field, self.field)
        return field == self.field


def parse_pattern(text: str) -> Pattern:
    """``"Listing.ListPrice"`` -> Pattern; raises ``ValueError`` saying what is wrong."""
    entity, dot, field = text.partition(".")
    if not dot:
        raise ValueError("a match is 'Entity.Field' (either part may be '*')")
    if entity != "*" and not _NAME.match(entity):
        raise ValueError(
            f"entity {entity!r} must be a name or '*' (entity globs are not supported)"
        )
    if not _GLOB.match(field):
        raise ValueError(f"field {field!r} may hold letters, digits, '_', '*' and '?' only")
    return Pattern(text=text, entity=None if entity == "*" else entity, field=field)
