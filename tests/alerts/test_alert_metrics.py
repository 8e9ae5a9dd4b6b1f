"""Every metric the alert rules select is one the daemon exports: the dev-profile daemon (the real
tree, prod mode with the dev CA and the sandbox insurer) is scraped after one deploy."""

from __future__ import annotations

from tests.alerts.rules import alert_rules, metric_names
from tests.e2e import DEPLOY, as_, dev_daemon

# series Prometheus records itself for each scrape, not the daemon
PROMETHEUS_OWN = frozenset({"up"})


def test_every_metric_in_the_rules_is_exported_by_the_daemon(tmp_path) -> None:
    with dev_daemon(tmp_path) as daemon:
        deployed = daemon.http.post("/v1/deployments", json=DEPLOY, headers=as_(daemon, "service"))
        assert deployed.status_code == 200, deployed.text  # labelled operation series exist once counted
        scrape = daemon.http.get("/metrics", headers=as_(daemon, "service"))
    assert scrape.status_code == 200, scrape.text
    exported = {line.split("{", 1)[0].split(" ", 1)[0] for line in scrape.text.splitlines()
                if line and not line.startswith("#")}
    used = {name: rule["alert"] for rule in alert_rules() for name in metric_names(rule["expr"])}
    assert set(used) - PROMETHEUS_OWN, "the rules select no metric of the daemon"
    missing = {name: alert for name, alert in used.items() if name not in exported | PROMETHEUS_OWN}
    assert missing == {}, f"selected by the rules, not exported by the daemon: {missing}"
