"""The error tree drawn in ``cadastre.errors``' docstring is the real class hierarchy."""

from __future__ import annotations

import re

import cadastre.errors as errors
from cadastre.errors import CadastreError, Terminal, Transient, is_transient

LINE = re.compile(r"^(?P<indent>[ │├└─]*)(?P<name>[A-Z][A-Za-z]+)(?: \((?P<mark>\w+)\))?")


def _drawn() -> list[tuple[str, str | None, str | None]]:
    """(class, drawn parent, drawn marker) for every line of the tree."""
    doc = errors.__doc__ or ""
    tree = doc[doc.index("    CadastreError") : doc.index("\n\n", doc.index("    CadastreError"))]
    stack: list[tuple[int, str]] = []
    drawn = []
    for raw in tree.splitlines():
        match = LINE.match(raw.strip(" ") and raw[4:])
        assert match, raw
        depth = len(match.group("indent"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parent = stack[-1][1] if stack else None
        drawn.append((match.group("name"), parent, match.group("mark")))
        stack.append((depth, match.group("name")))
    return drawn


def test_the_drawn_tree_matches_the_classes() -> None:
    drawn = _drawn()
    classes = {
        name: obj
        for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, CadastreError)
    }
    assert {name for name, _, _ in drawn} == set(classes)
    for name, parent, mark in drawn:
        cls = classes[name]
        if parent is not None:
            assert classes[parent] in cls.__bases__, f"{name} is drawn under {parent}"
        if mark is not None:
            assert issubclass(cls, {"Transient": Transient, "Terminal": Terminal}[mark]), name


def test_every_concrete_error_says_whether_to_retry() -> None:
    groups = {"CadastreError", "StoreError", "VendorError"}
    for name, obj in vars(errors).items():
        if isinstance(obj, type) and issubclass(obj, CadastreError) and name not in groups:
            assert issubclass(obj, Transient) != issubclass(obj, Terminal), name
    assert is_transient(errors.StoreUnavailable("db down"))
    assert not is_transient(errors.OwnershipViolation("no"))
