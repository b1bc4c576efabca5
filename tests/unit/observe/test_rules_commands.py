"""Every command an alert tells a person to run exists, with every option it names.

An alert that says what to do is only useful if what it says works: a renamed command or option
would leave the runbook pointing at nothing, and no other test reads the rules' prose.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer.main

from cadastre.cli import app
from cadastre.observe.detectors import DETECTORS
from cadastre.observe.rules import default_rules_text, parse_rules

_COMMAND = re.compile(r"`(cadastre [^`]+)`")


def _commands() -> list[tuple[str, str]]:
    rules = parse_rules(default_rules_text(), detectors=DETECTORS)
    found: list[tuple[str, str]] = []
    for rule in rules.rules:
        texts = [rule.runbook, rule.rollback or ""]
        for text in texts:
            found += [(rule.name, " ".join(m.split())) for m in _COMMAND.findall(text)]
        if rule.rollback:
            found.append((rule.name, rule.rollback))
    return found


COMMANDS = _commands()


def test_the_default_rules_name_commands() -> None:
    assert len(COMMANDS) >= 10
    assert any(c.startswith("cadastre rollback ") for _, c in COMMANDS)


@pytest.mark.parametrize(("rule", "command"), COMMANDS, ids=[f"{r}:{c}" for r, c in COMMANDS])
def test_a_runbook_command_exists_with_its_options(rule: str, command: str) -> None:
    words = shlex.split(command)[1:]
    # typer vendors its own click: read the command tree by its attributes, not click's classes
    command_: Any = typer.main.get_command(app)
    path = ["cadastre"]
    while getattr(command_, "commands", None) and words and not words[0].startswith("-"):
        sub = command_.commands.get(words[0])
        if sub is None:
            break
        command_, path = sub, [*path, words.pop(0)]
    assert not getattr(command_, "commands", None), f"{rule}: `{command}` names no command"
    options = {name for p in command_.params for name in getattr(p, "opts", [])}
    named = {w.split("=")[0] for w in words if w.startswith("--")}
    assert named <= options, f"{rule}: {' '.join(path)} has no {sorted(named - options)}"
