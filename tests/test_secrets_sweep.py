"""docs/specification.md §8: secrets (keys, tokens) never appear in logs, receipts, errors or the
shell (issue 14). The dev-profile daemon starts with bearer tokens this test chose, is driven through
every route (allowed, refused, malformed, with a wrong token) and every remote-shell command, and
then every log line, exported receipt, response (body and headers), metrics page and shell output
is searched for the tokens, for every private key of the data directory (each base64 line of it)
and for any PEM block (but the ledger's public key an export publishes): none may be there.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tai_autonomics.gateway.routes import ROUTES
from tai_autonomics.gateway.shell_commands import COMMANDS
from tests.e2e import DEPLOY, POLICY_ID, as_, dev_daemon, receipts
from tests.daemon import CLI, REPO

TOKENS = {"SERVICE": "svc-secret-7e1d0c9a4b2f4e55a1", "AUDITOR": "aud-secret-3f9b2c7d1e6a4c08b2",
          "ADMIN": "adm-secret-9c4e7a2b5d1f4a69c3"}
NOT_A_TOKEN = "wrong-secret-5a7c9e1b3d2f4b80d4"  # a caller's mistaken token is a secret too
PUBLICATION = {"work_id": "w-2", "sku_id": "sku-001",
               "artifacts": {"code": "print(1)", "tests": "assert 1", "docs": "# doc", "metadata": "{}"}}
PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
# each command of the shell, with arguments that reach its work (and one refused line)
SHELL_LINES = ("tree", "which_children root", "state ProdMode", "state ReceiptLedger", "state CertManager",
               "state InsuranceClient", "call ReceiptLedger status", "cast Pricing status", "mode", "insurance",
               "receipts 200", "verify", "metrics", "top --once", "top --count 2 --interval 0.2 --json",
               "log_level DEBUG", "restart Pricing", "log_level INFO",
               "help", "help call", "call ReceiptLedger no_such_message", "mode resume", "quit")


def _private_keys(data_dir: Path) -> list[str]:
    """Every base64 line of every private key under the data directory (the ledger key, the
    certificate's key, the dev CA's)."""
    lines = []
    for path in data_dir.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            lines += [line for line in path.read_text().splitlines() if line and not line.startswith("-----")]
    return lines


def test_no_secret_in_any_log_receipt_response_metric_or_shell_output(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir()
    (var / "tokens.env").write_text("".join(f"TAI_TOKEN_{role}={token}\n" for role, token in TOKENS.items()))
    seen: list[str] = []  # every text a client, an operator or an auditor got
    with dev_daemon(tmp_path) as d:
        assert d.tokens == {role.lower(): token for role, token in TOKENS.items()}
        deployed = d.http.post("/v1/deployments", json=DEPLOY, headers={**as_(d, "service"), "Idempotency-Key": "s1"})
        assert deployed.status_code == 200, deployed.text
        published = d.http.post("/v1/publications", json=PUBLICATION | {"work_id": "w-1"}, headers=as_(d, "service"))
        assert published.status_code == 200, published.text
        ids = {"operation_id": deployed.json()["operation_id"], "work_id": "w-1", "name": "ProdMode",
               "id": deployed.json()["receipts"][0]["id"], "path": "0/000"}
        queries = {"/v1/ledger/consistency": {"from": 1, "to": 2}, "/v1/ledger/receipts": {"chain": POLICY_ID},
                   "/v1/receipts/{id}/proof": {}}
        bodies = {"/v1/deployments": DEPLOY, "/v1/publications": PUBLICATION,
                  "/v1/pricing/quotes": {"customer_id": "c", "metrics": {"m": 1}},
                  "/v1/actors/{name}/call": {"type": "status"}, "/v1/actors/{name}/cast": {"type": "status"}}
        answers = [published]
        for route in ROUTES:
            path = route.path.format(**ids)
            for role in ("service", "auditor", "admin"):
                answers.append(d.http.request(route.method, path, params=queries.get(route.path),
                                              json=bodies.get(route.path) if route.body else None,
                                              headers=as_(d, role)))
            answers.append(d.http.request(route.method, path, headers={"Authorization": f"Bearer {NOT_A_TOKEN}"}))
            answers.append(d.http.request(route.method, path, headers={"Authorization": f"Bearer {TOKENS['ADMIN']}x"}))
            answers.append(d.http.request(route.method, path, headers={"Authorization": f"Token {NOT_A_TOKEN}"}))
            if route.body:
                answers.append(d.http.request(route.method, path, content=b'{"broken": ', headers={
                    **as_(d, "admin" if "actors" in route.path else "service"), "Content-Type": "application/json"}))
        seen += [f"{a.status_code} {a.headers} {a.text}" for a in answers]
        assert any(a.status_code == 401 for a in answers) and any(a.status_code == 400 for a in answers)

        env = {k: v for k, v in os.environ.items() if not k.startswith("TAI_TOKEN_")}
        assert {line.split()[0] for line in SHELL_LINES} == set(COMMANDS)
        for token in (TOKENS["ADMIN"], NOT_A_TOKEN):
            done = subprocess.run([*CLI, "remote-shell", "--url", d.url, "--json", *(
                a for line in SHELL_LINES for a in ("-c", line))], cwd=REPO, capture_output=True, text=True,
                env={**env, "TAI_TOKEN_ADMIN": token}, timeout=180)
            seen += [done.stdout, done.stderr]
        assert '"command": "verify"' in seen[-4] or '"command":"verify"' in seen[-4], seen[-4][-2000:]
        seen += [d.http.get("/metrics", headers=as_(d, "auditor")).text]
        seen += [str(r) for r in receipts(d)]
        secrets = [*TOKENS.values(), NOT_A_TOKEN, *_private_keys(var)]
    assert len(secrets) > 6, "no private key found in the data directory"

    export = tmp_path / "export"
    exported = subprocess.run([*CLI, "ledger", "export", "--data-dir", str(var), "--out", str(export)],
                              capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    files = {path.name: path.read_text(errors="replace") for path in export.iterdir()}
    assert PEM.match(files.pop("public_key.pem"))  # the ledger's public key, published for auditors: not a secret
    seen += files.values()
    seen += [d.out.read_text()]  # every log line of the daemon, its actors and the sandbox child, after the stop

    leaks = [(secret[:12], text[max(0, text.find(secret) - 80):text.find(secret) + 20])
             for secret in secrets for text in seen if secret in text]
    assert not leaks, leaks
    blocks = [text[max(0, m.start() - 80):m.end() + 40] for text in seen for m in PEM.finditer(text)]
    assert not blocks, blocks
