"""The dev profile: what a laptop run needs, made on first use and reused afterwards.

``tai-autonomics foreground`` with no release file runs in ``prod`` mode against outside
parties played by the sandbox (started here as a child process) with a development CA, so
that the README's first command gives a working insured system without any setup.

Its actor admin port (unless the release file sets ``[system] admin_port``) is one picked free at
the first start and recorded in ``DATA_DIR/admin_port``: a fixed port (it was 19500) let only one
dev daemon run on a machine; one per data dir lets several run side by side.

Notifications go to the sandbox's customer (``/customer/v1/webhooks``), signed with the secret in
``$TAI_WEBHOOK_SECRET`` (made up for this run when unset; the sandbox child inherits it).

The release file's ``[sandbox] cert_validity_s`` sets how long this insurer's certificates are
valid: the first one (made with the dev CA on the first run, when the CA is created) and every
renewal the sandbox issues. Unset: 365 days for the first, 90 for renewals.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tai_autonomics import logs
from tai_autonomics.config import ReleaseConfig
from tai_autonomics.runtime.node import free_port, port_is_free
from tai_autonomics.sandbox import SandboxConfig, SandboxProcess
from tai_autonomics.sandbox.customer import WEBHOOK_PATH, WEBHOOK_SECRET_ENV
from tai_autonomics.trust import sample_policy, write_dev_ca
from tai_autonomics.trust.issuing import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    DEV_CERT_FILE,
    DEV_KEY_FILE,
)

log = logging.getLogger(__name__)

DEV_CA_DIR = "dev-ca"
ADMIN_PORT_FILE = "admin_port"


@dataclass
class DevEnvironment:
    sandbox: SandboxProcess
    context: dict[str, Any]

    def stop(self) -> None:
        self.sandbox.stop()


def prepare(release: ReleaseConfig) -> DevEnvironment:
    """Create the dev CA (first run only), start the sandbox, and describe both to the actors."""
    data_dir = release.data_dir.resolve()
    ca_dir = data_dir / DEV_CA_DIR
    validity = None if release.sandbox_cert_validity_s is None else timedelta(seconds=release.sandbox_cert_validity_s)
    if not (ca_dir / CA_KEY_FILE).exists():
        if validity is None:
            write_dev_ca(ca_dir)
        else:
            write_dev_ca(ca_dir, valid_for=validity)
        logs.event(log, "development CA created", event="dev_ca_created", directory=str(ca_dir))
    os.environ.setdefault(WEBHOOK_SECRET_ENV, secrets.token_hex(32))  # the sandbox child and the actors inherit it
    sandbox = SandboxProcess(data_dir, ca_dir=ca_dir, cert_validity=validity, on_line=sys.stdout.write)
    url = sandbox.start()
    logs.event(log, "sandbox started", event="sandbox_started", url=url)
    context = release.context()
    context["insurer"] = {"url": url, "policy_id": sample_policy().policy_id,
                          "public_key_file": str(SandboxConfig(data_dir / "sandbox").insurer_public_key_file),
                          **context["insurer"]}
    context["trust"] = {"anchor": str(ca_dir / CA_CERT_FILE), "cert_file": str(ca_dir / DEV_CERT_FILE),
                        "key_file": str(ca_dir / DEV_KEY_FILE), "cert_dir": str(data_dir / "certs"),
                        **context["trust"]}
    # the ledger key and origin: the defaults (what `ledger export` and `verify` use with no flags)
    context["ledger"] = {"store": "sqlite", **context["ledger"]}
    context["sandbox"] = {"url": url}
    # notifications go to the sandbox's customer, which checks their signatures (docs/notifications.md)
    context["notifications"] = {"urls": [f"{url}{WEBHOOK_PATH}"], "secret_env": WEBHOOK_SECRET_ENV,
                                **context["notifications"]}
    return DevEnvironment(sandbox, context)


def admin_port(data_dir: Path, bind: str) -> int:
    """The actor admin port of the dev daemon on ``data_dir``: the one recorded in
    ``DATA_DIR/admin_port`` while it is free, else a free one, recorded for the next start.

    Call it holding the data dir's lock (one daemon per data dir), so no other daemon of this data
    dir reads or writes the file meanwhile. A recorded port taken since (another data dir's
    daemon was given it while this one was stopped) is replaced, not fought over.
    """
    path = data_dir / ADMIN_PORT_FILE
    recorded = recorded_admin_port(data_dir)
    if recorded is not None and port_is_free(bind, recorded):
        return recorded
    port = free_port(bind)
    path.write_text(f"{port}\n")
    if recorded is not None:
        logs.event(log, f"admin port {recorded} is taken; using {port}", logging.WARNING,
                   event="admin_port_replaced", taken=recorded, port=port)
    return port


def recorded_admin_port(data_dir: Path) -> int | None:
    """The admin port recorded in ``DATA_DIR/admin_port``, or None (none yet, or not a port)."""
    try:
        port = int((data_dir / ADMIN_PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return port if 1 <= port <= 65535 else None
