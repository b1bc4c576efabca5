"""Alert rules: a YAML list of rules, each holding one detector's findings to a threshold for a
time, with a severity, an owner and what to do (docs/alerts.md).

::

    - name: vendor_error_rate
      detector: error_rate          # a key of observe.detectors.DETECTORS
      params: {window: 300, threshold: 0.25, min_calls: 20}
      for: 120                      # seconds the condition holds before it fires (0: at once)
      clear_for: 300                # seconds it stays clear before the alert resolves
      severity: critical            # info | warning | critical
      owner: integrations-oncall
      summary: "{vendor} ({connection}): error rate spike"
      runbook: "Check the vendor's status page; ..."
      rollback: "cadastre rollback connection {connection} --tenant {tenant} --to previous"
      absorbs: [credential_needs_reauth]   # optional: subsystem alerts this rule's alert stands for

The packaged ``rules.yaml`` is the default; ``CADASTRE_ALERT_RULES`` names a file that replaces
it whole. A rule whose detector is ``event`` names a subsystem alert (``data.alert`` of the
vault's, the webhook sender's ... ``cadastre.alert.raised.v1``): it gives that alert an owner
and a ``clear_for`` after which it resolves without a repeat; its summary and action come from
the event itself, so summary and runbook are optional there.

``absorbs`` names subsystem alerts that report what a detector rule finds itself (the vault's
``credential_needs_reauth`` is what ``credential_reauth`` finds): the ``alerts`` consumer folds
such an event into that rule's alert, keyed by the event's subject - which must be the key the
rule's detector gives its finding (the credential's name) - so one problem is one alert, which
the detector keeps and clears. A name is absorbed by one rule at most, only by a detector rule,
and never names a rule of the file (its own ``event`` rule would never be used).

Everything is checked at load, so a bad file stops the hub (or ``cadastre alerts rules
--check``) rather than the first evaluation: YAML, fields, the detector and its parameters
(``Detector.check_params``), duplicate names, and the ``{placeholders}`` of the texts, which
must be among ``PLACEHOLDERS``. Errors name the rule and the field.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cadastre.config import load_yaml
from cadastre.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from cadastre.observe.detection import Detector

DEFAULT_NAME = "rules.yaml"
EVENT_DETECTOR = "event"
# What a rule's summary, runbook and rollback may name. Values an alert does not have (a
# credential rule has no stream) are written as ``<name>``, for the reader to fill in.
PLACEHOLDERS = frozenset({
    "tenant", "id", "rule", "key", "severity", "owner", "connection", "vendor", "credential",
    "stream", "mapping", "subscription",
})  # fmt: skip
_FORMATTER = string.Formatter()
_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")


def placeholders(template: str) -> list[str]:
    """The ``{names}`` of ``template``; ``ValueError`` for a brace that opens no placeholder, a
    placeholder without a name, or one with a conversion or format (``{tenant!r}``, ``{x:>4}``),
    which a runbook has no use for."""
    names = []
    for _, name, spec, conversion in _FORMATTER.parse(template):
        if name is None:
            continue
        if not name:
            raise ValueError("an empty {} placeholder; name one of " + _known())
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no conversion or format")
        names.append(name)
    return names


def render(template: str, values: Mapping[str, str | None]) -> str:
    """``template`` with each placeholder replaced: its value, or ``<name>`` when there is none."""
    out = []
    for text, name, _, _ in _FORMATTER.parse(template):
        out.append(text)
        if name:
            value = values.get(name)
            out.append(value if value else f"<{name}>")
    return "".join(out)


def _known() -> str:
    return ", ".join(sorted(PLACEHOLDERS))


def _detectors(info: ValidationInfo) -> Mapping[str, Detector] | None:
    found: Mapping[str, Detector] | None = (info.context or {}).get("detectors")
    return found


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,99}$")
    detector: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    for_: float = Field(default=0.0, alias="for", ge=0, le=7 * 86400)
    clear_for: float = Field(default=300.0, ge=0, le=30 * 86400)
    severity: Literal["info", "warning", "critical"]
    owner: str = Field(min_length=1, max_length=100)
    summary: str = Field(default="", max_length=500)
    runbook: str = Field(default="", max_length=4000)
    rollback: str | None = Field(default=None, max_length=500)
    absorbs: tuple[str, ...] = ()  # subsystem alerts (``data.alert``) folded into this rule's

    @field_validator("absorbs", mode="before")
    @classmethod
    def _alert_names(cls, names: Any) -> Any:
        if not isinstance(names, list | tuple):
            raise ValueError("a list of subsystem alert names ([credential_needs_reauth])")
        bad = [n for n in names if not isinstance(n, str) or not _NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"{', '.join(map(repr, bad))}: not an alert name ([a-z][a-z0-9_]*)")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(map(repr, twice))} given twice")
        return tuple(names)

    @field_validator("summary", "runbook", "rollback")
    @classmethod
    def _known_placeholders(cls, template: str | None) -> str | None:
        if template is None:
            return None
        unknown = [n for n in placeholders(template) if n not in PLACEHOLDERS]
        if unknown:
            raise ValueError(
                f"unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                f"(known: {_known()})"
            )
        return template

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, name: str, info: ValidationInfo) -> str:
        detectors = _detectors(info)
        if detectors is not None and name not in detectors:
            raise ValueError(f"unknown detector {name!r} (known: {', '.join(sorted(detectors))})")
        return name

    @field_validator("params")
    @classmethod
    def _detector_params(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        detectors = _detectors(info)
        detector = detectors.get(info.data.get("detector", "")) if detectors else None
        if detector is not None:  # an unknown detector is reported on its own field
            detector.check_params(params)
        return params

    @model_validator(mode="after")
    def _says_what_to_do(self) -> Rule:
        if self.detector != EVENT_DETECTOR:
            for field in ("summary", "runbook"):
                if not getattr(self, field).strip():
                    raise ValueError(f"{field}: a detector rule needs one (what to do)")
        elif self.absorbs:
            raise ValueError(
                "absorbs: only a detector rule absorbs subsystem alerts; an event rule is one"
            )
        if self.name in self.absorbs:
            raise ValueError(f"absorbs: {self.name!r} is the rule itself")
        return self

    @property
    def is_event(self) -> bool:
        return self.detector == EVENT_DETECTOR


@dataclass(frozen=True)
class AlertRules:
    """The rules in force and where they came from."""

    rules: tuple[Rule, ...]
    source: str  # the file, or "rules.yaml (packaged default)"

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def absorbing(self, alert: str) -> Rule | None:
        """The detector rule whose ``absorbs`` names the subsystem alert ``alert``, if any."""
        return next((r for r in self.rules if alert in r.absorbs), None)

    @property
    def detecting(self) -> tuple[Rule, ...]:
        """The rules evaluated against the store (not the subsystem ``event`` ones)."""
        return tuple(r for r in self.rules if not r.is_event)


def default_rules_text() -> str:
    return resources.files("cadastre.observe").joinpath(DEFAULT_NAME).read_text("utf-8")


def load_rules(path: Path | None = None, *, detectors: Mapping[str, Detector]) -> AlertRules:
    """``path`` (``CADASTRE_ALERT_RULES``), or the packaged default when None.
    ``ConfigurationError`` for anything wrong, naming the file and, per problem, the rule and
    the field."""
    if path is None:
        text, source = default_rules_text(), f"{DEFAULT_NAME} (packaged default)"
    else:
        source = str(path)
        try:
            text = Path(path).read_text("utf-8")
        except FileNotFoundError:
            raise ConfigurationError(f"{source}: no such alert rules file") from None
        except IsADirectoryError:
            raise ConfigurationError(f"{source}: is a directory, not an alert rules file") from None
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"{source}: not UTF-8 text (invalid byte at offset {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigurationError(
                f"{source}: cannot be read: {exc.strerror or type(exc).__name__}"
            ) from None
    return parse_rules(text, source=source, detectors=detectors)


def parse_rules(
    text: str, *, source: str = "<rules>", detectors: Mapping[str, Detector]
) -> AlertRules:
    try:
        data = load_yaml(text, source=source)
        lines = _rule_lines(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigurationError(f"{source}: not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, list):
        raise ConfigurationError(
            f"{source}: expected a list of rules (each '- name: ...'), not "
            f"{type(data).__name__ if data is not None else 'an empty file'}"
        )
    rules: list[Rule] = []
    problems: list[str] = []
    for index, raw in enumerate(data, start=1):
        line = lines.get(index)
        label = _label(index, raw, line)
        if not isinstance(raw, dict):
            problems.append(f"{label}: a rule is a mapping (name, detector, ...)")
            continue
        try:
            rules.append(Rule.model_validate(raw, context={"detectors": detectors}))
        except ValidationError as exc:
            problems.extend(f"{label}: {p}" for p in _problems(exc))
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules, start=1):
        if rule.name in seen:
            problems.append(f"rule {rule.name!r}: name: given twice (rules {seen[rule.name]} "
                            f"and {index}); names are unique")  # fmt: skip
        seen.setdefault(rule.name, index)
    absorbed: dict[str, str] = {}
    for rule in rules:
        for alert in rule.absorbs:
            if alert in seen:
                problems.append(f"rule {rule.name!r}: absorbs: {alert!r} is a rule of its own "
                                f"(rule {seen[alert]}); remove one of them")  # fmt: skip
            elif alert in absorbed:
                problems.append(f"rule {rule.name!r}: absorbs: {alert!r} is absorbed by rule "
                                f"{absorbed[alert]!r} already")  # fmt: skip
            absorbed.setdefault(alert, rule.name)
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ConfigurationError(f"{source}: invalid alert rules:\n{listing}")
    return AlertRules(tuple(rules), source)


def _label(index: int, raw: Any, line: int | None) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"rule {name!r}" if isinstance(name, str) and name else f"rule {index}"
    return where + (f" (line {line})" if line else "")


def _problems(exc: ValidationError) -> list[str]:
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join("for" if part == "for_" else str(part) for part in error["loc"])
        message = re.sub(r"^Value error, ", "", error["msg"])
        # a whole-rule check (placeholders, the detector) names its field itself
        found.append(f"{loc}: {message}" if loc else message)
    return found


def _rule_lines(text: str) -> dict[int, int]:
    """1-based rule index -> 1-based line of that rule."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.SequenceNode):
        return {}
    return {i: item.start_mark.line + 1 for i, item in enumerate(root.value, start=1)}
