"""Alert rules files: the packaged default covers every detector with something to do, and a bad
file is refused at load with an error naming the rule and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cadastre.errors import ConfigurationError
from cadastre.observe.detectors import BACKLOG_GAUGES, DETECTORS
from cadastre.observe.rules import PLACEHOLDERS, load_rules, parse_rules, placeholders, render

GOOD = """
- name: vendor_error_rate
  detector: error_rate
  params: {window: 300, threshold: 0.25, min_calls: 20}
  for: 60
  clear_for: 120
  severity: critical
  owner: integrations-oncall
  summary: "{vendor} ({connection}): error rate spike"
  runbook: "`cadastre connections pause {connection} --tenant {tenant}`"
"""


def refused(text: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_rules(text, source="rules.yaml", detectors=DETECTORS)
    return str(caught.value)


def test_the_packaged_default_has_a_rule_for_every_detector_and_backlog() -> None:
    rules = load_rules(None, detectors=DETECTORS)
    assert rules.source == "rules.yaml (packaged default)"
    assert {r.detector for r in rules} == set(DETECTORS)
    gauges = {r.params["gauge"] for r in rules if r.detector == "backlog_growth"}
    assert gauges == set(BACKLOG_GAUGES)
    values = dict.fromkeys(PLACEHOLDERS, "x")
    for rule in rules.detecting:
        assert rule.owner, rule.name
        assert rule.severity in ("info", "warning", "critical"), rule.name
        action = render(rule.runbook, values)
        assert "`cadastre " in action, rule.name  # says what to do, as a command
        assert "{" not in action, rule.name
        if rule.rollback is not None:
            assert re.fullmatch(r"cadastre rollback (connection|mapping|ownership) .+",
                                rule.rollback), rule.name  # fmt: skip
    # behaviour changes and vendor errors after an edit answer with the connection's rollback,
    # schema drift with the mapping's
    by_name = {r.name: r for r in rules}
    connection = "cadastre rollback connection {connection} --tenant {tenant} --to previous"
    assert by_name["vendor_behaviour_change"].rollback == connection
    assert by_name["vendor_error_rate"].rollback == connection
    assert (by_name["schema_drift"].rollback or "").startswith("cadastre rollback mapping")
    assert "cadastre mappings check {connection}" in by_name["schema_drift"].runbook
    assert {r.name for r in rules if r.is_event} >= {
        "webhook_delivery_dead",
        "webhook_subscription_disabled",
    }
    # the vault's own alert of a refused refresh is the credential_reauth alert, not another
    assert by_name["credential_reauth"].absorbs == ("credential_needs_reauth",)
    assert rules.absorbing("credential_needs_reauth") is by_name["credential_reauth"]
    assert "credential_needs_reauth" not in by_name
    assert rules.absorbing("webhook_delivery_dead") is None


def test_a_good_file_loads_and_replaces_the_default(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD)
    rules = load_rules(path, detectors=DETECTORS)
    assert [r.name for r in rules] == ["vendor_error_rate"]
    rule = rules.get("vendor_error_rate")
    assert rule is not None
    assert (rule.for_, rule.clear_for) == (60, 120)
    assert rules.source == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- name: [unclosed", "not valid YAML at line 1"),
        ("name: x\ndetector: error_rate", "expected a list of rules"),
        ("", "an empty file"),
        ("- just text", "rule 1 (line 1): a rule is a mapping"),
        (
            GOOD.replace("severity: critical", "severity: urgent"),
            "rule 'vendor_error_rate' (line 2): severity: Input should be 'info', 'warning' or "
            "'critical'",
        ),
        (
            GOOD.replace("for: 60", "for: -1"),
            "rule 'vendor_error_rate' (line 2): for: Input should be greater than or equal to 0",
        ),
        (GOOD.replace("owner: integrations-oncall", "owner: ''"), "owner: String should have"),
        (GOOD.replace("  owner: integrations-oncall\n", ""), "owner: Field required"),
        (GOOD + "  colour: red\n", "colour: Extra inputs are not permitted"),
        (
            GOOD.replace("detector: error_rate", "detector: error_rates"),
            "detector: unknown detector 'error_rates' (known: backlog_growth,",
        ),
        (
            GOOD.replace("threshold: 0.25", "threshold: 2"),
            "params: error_rate: parameter 'threshold' is a share above 0 and at most 1, not 2",
        ),
        (
            GOOD.replace("min_calls: 20", "min_call: 20"),
            "params: error_rate: unknown parameter(s) ['min_call']",
        ),
        (
            GOOD.replace("{connection}):", "{conection}):"),
            "summary: unknown placeholder(s) {conection} (known: connection, credential, id,",
        ),
        (
            GOOD.replace("--tenant {tenant}`", "--tenant {tenant!r}`"),
            "runbook: placeholder {tenant} takes no conversion or format",
        ),
        (GOOD.replace("--tenant {tenant}`", "--tenant {}`"), "runbook: an empty {} placeholder"),
        (GOOD.replace("--tenant {tenant}`", "--tenant {tenant`"), "runbook: expected '}'"),
        (
            GOOD + '  rollback: "cadastre rollback mapping {map}"\n',
            "rollback: unknown placeholder(s) {map}",
        ),
        (
            GOOD.replace(
                '  runbook: "`cadastre connections pause {connection} --tenant {tenant}`"\n', ""
            ),
            "runbook: a detector rule needs one (what to do)",
        ),
        (
            GOOD.replace("name: vendor_error_rate", "name: Vendor Error Rate"),
            "rule 'Vendor Error Rate' (line 2): name: String should match pattern",
        ),
        (GOOD + GOOD, "rule 'vendor_error_rate': name: given twice (rules 1 and 2)"),
        (GOOD + "  absorbs: credential_needs_reauth\n", "absorbs: a list of subsystem alert"),
        (GOOD + "  absorbs: [Needs Reauth]\n", "absorbs: 'Needs Reauth': not an alert name"),
        (GOOD + "  absorbs: [a_b, a_b]\n", "absorbs: 'a_b' given twice"),
        (GOOD + "  absorbs: [vendor_error_rate]\n", "absorbs: 'vendor_error_rate' is the rule"),
        (
            GOOD
            + "  absorbs: [x_down]\n"
            + "- {name: x_down, detector: event, severity: warning, owner: ops}\n",
            "rule 'vendor_error_rate': absorbs: 'x_down' is a rule of its own (rule 2); remove",
        ),
        (
            GOOD
            + "  absorbs: [x_down]\n"
            + GOOD.replace("name: vendor_error_rate", "name: second")
            + "  absorbs: [x_down]\n",
            "rule 'second': absorbs: 'x_down' is absorbed by rule 'vendor_error_rate' already",
        ),
        (
            "- {name: x, detector: event, severity: warning, owner: ops, absorbs: [y]}",
            "absorbs: only a detector rule absorbs subsystem alerts",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_rule_and_the_field(text: str, expected: str) -> None:
    message = refused(text)
    assert message.startswith("rules.yaml: ")
    assert expected in message, message


def test_every_problem_of_a_file_is_listed_at_once() -> None:
    text = GOOD.replace("severity: critical", "severity: loud") + GOOD.replace(
        "name: vendor_error_rate", "name: second"
    ).replace("detector: error_rate", "detector: x")
    message = refused(text)
    assert "rule 'vendor_error_rate' (line 2): severity:" in message
    assert "rule 'second' (line 12): detector: unknown detector 'x'" in message


def test_an_event_rule_needs_no_texts_and_takes_no_params() -> None:
    rules = parse_rules(
        "- {name: webhook_delivery_dead, detector: event, severity: warning, owner: ops}",
        detectors=DETECTORS,
    )
    assert [r.is_event for r in rules] == [True]
    assert rules.detecting == ()
    assert "params: event: unknown parameter(s) ['window']" in refused(
        "- {name: x, detector: event, severity: warning, owner: ops, params: {window: 1}}"
    )


def test_unreadable_files(tmp_path: Path) -> None:
    for path, expected in [
        (tmp_path / "missing.yaml", "no such alert rules file"),
        (tmp_path, "is a directory"),
    ]:
        with pytest.raises(ConfigurationError, match=expected):
            load_rules(path, detectors=DETECTORS)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.replace("spike", "pic \xe9lev\xe9").encode("latin-1"))
    with pytest.raises(ConfigurationError, match="not UTF-8 text"):
        load_rules(latin, detectors=DETECTORS)


def test_placeholders_and_rendering() -> None:
    assert placeholders("a {tenant} b {connection}{tenant}") == ["tenant", "connection", "tenant"]
    assert placeholders("no placeholder, `{{literal}}` braces") == []
    values = {"tenant": "acme", "connection": None}
    assert render("`cadastre sync {connection} --tenant {tenant}` {{x}}", values) == (
        "`cadastre sync <connection> --tenant acme` {x}")  # fmt: skip
