"""rel/alerts.yaml is valid Prometheus, every alert is unit-tested firing and not firing with
``promtool test rules``, and each has its severity, annotations and a documented runbook."""

from __future__ import annotations

import re

import yaml

from tests.alerts.rules import REPO, RULE_TESTS, RULES, alert_rules, metric_names, promtool

# the plan's alerts (issue 11): which severity each has
PLAN = {"TaiCertificateExpired": "critical", "TaiNotServing": "critical", "TaiDeployFailureRateHigh": "critical",
        "TaiCertificateExpiresSoon": "warning", "TaiInsurerLatencyHigh": "warning",
        "TaiDeployLatencyHigh": "warning", "TaiReadOnly": "warning", "TaiInsurerCacheMissRateHigh": "info"}


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", str(RULES.relative_to(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in done.stdout, done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", str(RULE_TESTS.relative_to(REPO)))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_cases_that_fire_and_cases_that_do_not() -> None:
    fires, quiet = set(), set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", ()):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fires == set(), "alerts without a case that fires"
    assert alerts - quiet == set(), "alerts without a case that does not fire"


def test_the_plans_alerts_with_their_severity_summary_description_and_runbook() -> None:
    rules = alert_rules()
    assert {rule["alert"]: rule["labels"]["severity"] for rule in rules} == PLAN
    anchors = {heading.lower() for heading in re.findall(r"^## (\w+)", (REPO / "docs" / "alerts.md").read_text(),
                                                         re.MULTILINE)}
    for rule in rules:
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert annotations["runbook"].startswith(f"docs/alerts.md#{rule['alert'].lower()}:"), rule["alert"]
        assert rule["alert"].lower() in anchors, f"docs/alerts.md has no section for {rule['alert']}"


def test_metric_names_finds_what_an_expression_selects_and_nothing_else() -> None:
    expr = ('sum(rate(a_total{outcome="failed",x=~"b|c"}[10m] offset 5m)) / on (job) group_left (mode) '
            'histogram_quantile(0.95, sum by (le) (rate(d_bucket[5m]))) > 1e3 and bool up unless absent(e == 1)')
    assert metric_names(expr) == {"a_total", "d_bucket", "up", "e"}
    for rule in alert_rules():  # no tai_ series escapes it (a plain search cross-checks the tokenizer)
        assert set(re.findall(r"\btai_\w+", rule["expr"])) <= metric_names(rule["expr"]), rule["alert"]
