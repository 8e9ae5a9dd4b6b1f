"""Notifier: signed webhooks for what the ledger records (docs/specification.md §12).

It reads the receipts of the policy's chain as they are appended (every ``poll_interval_s``),
turns them into notices (:mod:`tai_autonomics.notifications.rules`: certificate expiry at
30/7/1 days and expired, ``read_only`` and back, a failed deploy or publish, coverage at 80 % and
exceeded, a contract's cure notice), lets one per (customer, kind) per ``window_s`` through, and
POSTs each to every configured URL, signed (``X-TAI-Signature``, :mod:`.signing`), retried with
exponential back-off on timers (``attempts``, ``backoff_base_s``, ``backoff_cap_s``; the HTTP
call runs off the actor with ``run_blocking``). Each delivery's outcome is a receipt:
``notification.sent`` or ``notification.failed`` (after the last attempt), with the notice, the
URL (without its query), the attempts and the receipt it follows from.

Reading from the ledger keeps the other actors as they are and makes notices restart-safe: a
new incarnation takes the throttle's memory from the notification receipts among the ledger's
latest 1000 receipts and reads again from the oldest source of those settled within the window
(else on from the last one's source, else from the oldest of the chain's receipts among them):
what was settled is held back by the throttle, and a delivery that was still being retried is
sent again (with a new ``X-TAI-Delivery``). Several instances on one Firestore ledger each
notify: see docs/notifications.md.

Config: the context's ``notifications`` section (release file ``[notifications]``): ``urls`` (a
list of http(s) URLs; none: the actor idles) and ``secret_env`` (the environment variable holding
the HMAC secret; required with URLs). Worker args: ``poll_interval_s`` (1), ``attempts`` (5),
``backoff_base_s`` (1), ``backoff_cap_s`` (60), ``timeout_s`` (5), ``window_s`` (3600).

Calls: ``status`` → ``{"enabled", "urls", "chain", "cursor", "pending", "sent", "failed",
"suppressed"}``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from tai_autonomics.actors import ledger_api, status_api
from tai_autonomics.actors.names import CERT_MANAGER, PROD_MODE, RECEIPT_LEDGER
from tai_autonomics.errors import ConfigError, TaiError
from tai_autonomics.notifications.rules import Notice, Throttle, Watch
from tai_autonomics.notifications.signing import HEADER, sign
from tai_autonomics.runtime import Server
from tai_autonomics.validation import Refuse, valid_int, valid_number

SENT, FAILED = "notification.sent", "notification.failed"
PAGE = 200
LOOK_BACK = 1000


@dataclass(frozen=True)
class _Retry:
    delivery_id: str


@dataclass
class _Delivery:
    delivery_id: str
    url: str
    notice: Notice
    body: bytes
    attempts: int = 0


_WHERE = "the Notifier's arguments"  # ConfigError's "file": the notifications section of the tree's context
class Notifier(Server):
    def init(self, args: dict[str, Any]) -> None:
        section = (args.get("context") or {}).get("notifications") or {}
        self.urls = _urls(section.get("urls"))
        self.poll_s = _positive(args, "poll_interval_s", 1.0)
        attempts = args.get("attempts", 5)
        self.attempts = valid_int(attempts, "attempts", minimum=1, error=_config_error(attempts))
        self.backoff_base_s = _positive(args, "backoff_base_s", 1.0)
        self.backoff_cap_s = _positive(args, "backoff_cap_s", 60.0)
        self.timeout_s = _positive(args, "timeout_s", 5.0)
        self.throttle = Throttle(_positive(args, "window_s", 3600.0))
        self.chain: str | None = None
        self.cursor = 0
        self.watch: Watch | None = None
        self.pending: dict[str, _Delivery] = {}
        self.counts = {"sent": 0, "failed": 0, "suppressed": 0}
        self._http: httpx.Client | None = None
        self._secret = b""
        if not self.urls:
            return
        variable = section.get("secret_env")
        secret = os.environ.get(variable) if isinstance(variable, str) and variable else None
        if not secret:
            raise ConfigError(_WHERE, "notifications.secret_env", "must name a set environment variable holding the "
                              f"webhook secret (got {variable!r})")
        self._secret = secret.encode()
        self.start_timer(0, "poll")

    def terminate(self, reason: str) -> None:
        if self._http is not None:
            self._http.close()

    def call_status(self, _payload: Any) -> dict[str, Any]:
        return {"enabled": bool(self.urls), "urls": [_shown(u) for u in self.urls], "chain": self.chain,
                "cursor": self.cursor, "pending": len(self.pending), **self.counts}

    def inspect_state(self) -> dict[str, Any]:
        return self.call_status(None)

    # -- reading the chain ------------------------------------------------------------------------

    def on_timer(self, payload: Any) -> None:
        if isinstance(payload, _Retry) and payload.delivery_id in self.pending:
            self._send(self.pending[payload.delivery_id])
        elif payload == "poll":
            if self.watch is None or self.chain is None:  # the chain is found before the watch is set
                status_api.status(self, PROD_MODE, then=self._found_chain)
            else:
                ledger_api.receipts(self, ledger_api.receipts_query(self.chain, self.cursor, PAGE), then=self._read)

    def _again(self, now: bool = False) -> None:
        self.start_timer(0 if now else self.poll_s, "poll")

    def _found_chain(self, status: Any, error: TaiError | None) -> None:
        chain = status.get("policy_id") if error is None and isinstance(status, dict) else None
        if not chain:  # eval, or ProdMode restarting: no contractual chain to follow yet
            self._again()
            return
        self.chain = chain
        status_api.status(self, CERT_MANAGER, then=lambda cert, err: self._found_customer(cert, err))

    def _found_customer(self, cert: Any, error: TaiError | None) -> None:
        if error is not None:  # CertManager refuses status outside the validity window, with the status in its detail
            cert = error.detail.get("status")
        policy = cert.get("policy") if isinstance(cert, dict) else None
        customer = str((policy if isinstance(policy, dict) else {}).get("customer_account") or self.chain)
        self.call_actor(RECEIPT_LEDGER, "usage", {"chain": self.chain},
                        then=lambda usage, err: self._found_usage(customer, usage if err is None else []))

    def _found_usage(self, customer: str, usage: Any) -> None:
        self.call_actor(RECEIPT_LEDGER, "latest", {"limit": LOOK_BACK},
                        then=lambda latest, err: self._resume(customer, usage, [] if err else latest))

    def _resume(self, customer: str, usage: Any, latest: list[dict[str, Any]]) -> None:
        """Where to read on from, and what was sent within the window (module docstring)."""
        ours = [r for r in latest if r.get("chain") == self.chain]
        settled = [r for r in ours if r.get("kind") in (SENT, FAILED)]
        now = time.time()
        recent = [r for r in settled if now - _epoch(r["time"]) < self.throttle.window_s]
        if recent:  # read again from the oldest notice settled within the window: the throttle holds back
            # the settled ones, and one that was still being retried when the last incarnation ended is sent
            self.cursor = min(int(r["payload"].get("source_seq") or 0) for r in recent) - 1
        elif settled:
            self.cursor = max(int(r["payload"].get("source_seq") or 0) for r in settled)
        elif ours:
            self.cursor = int(ours[0]["seq"]) - 1
        for receipt in settled:
            self.throttle.remember(receipt["payload"]["customer"], receipt["payload"]["notice"],
                                   _epoch(receipt["time"]))
        head = int(ours[-1]["seq"]) if ours else 0
        self.watch = Watch(customer, usage if isinstance(usage, list) else [], counted_through=head)
        self._again(now=True)

    def _read(self, page: Any, error: TaiError | None) -> None:
        if error is not None or not isinstance(page, list):
            self._again()
            return
        now = time.time()
        assert self.watch is not None
        for receipt in page:
            for notice in self.watch.notices(receipt):
                if self.throttle.allow(notice.customer, notice.kind, now):
                    for url in self.urls:
                        self._send(self._delivery(url, notice))
                else:
                    self.counts["suppressed"] += 1
            self.cursor = int(receipt["seq"])
        self._again(now=ledger_api.next_after(page, PAGE) is not None)

    # -- delivering -------------------------------------------------------------------------------

    def _delivery(self, url: str, notice: Notice) -> _Delivery:
        delivery_id = uuid.uuid4().hex
        body = json.dumps({"id": delivery_id, "kind": notice.kind, "customer": notice.customer,
                           "policy_id": self.chain, "time": _now(), "detail": notice.detail,
                           "receipt": notice.source}, separators=(",", ":"), sort_keys=True).encode()
        delivery = _Delivery(delivery_id, url, notice, body)
        self.pending[delivery_id] = delivery
        return delivery

    def _send(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        headers = {HEADER: sign(self._secret, delivery.body), "Content-Type": "application/json",
                   "X-TAI-Delivery": delivery.delivery_id}
        http = self._client()
        self.run_blocking(lambda: http.post(delivery.url, content=delivery.body, headers=headers).status_code,
                          then=lambda status, error: self._sent(delivery, status, error))

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout_s)
        return self._http

    def _sent(self, delivery: _Delivery, status: int | None, error: BaseException | None) -> None:
        delivered = error is None and status is not None and 200 <= status < 300
        if not delivered and delivery.attempts < self.attempts:
            wait = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (delivery.attempts - 1))
            self.start_timer(wait, _Retry(delivery.delivery_id))
            return
        self.pending.pop(delivery.delivery_id, None)
        self.counts["sent" if delivered else "failed"] += 1
        notice = delivery.notice
        payload = {"notice": notice.kind, "customer": notice.customer, "delivery_id": delivery.delivery_id,
                   "url": _shown(delivery.url), "attempts": delivery.attempts, "http_status": status,
                   "error": None if error is None else type(error).__name__, "source": notice.source,
                   "source_seq": notice.source.get("seq"), "detail": notice.detail}
        ledger_api.append(self, {"kind": SENT if delivered else FAILED, "mode": "prod", "chain": self.chain,
                                 "payload": payload}, then=lambda _r, _e: None)


def _urls(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(u, str) and urlsplit(u).scheme in ("http", "https")
                                              and urlsplit(u).netloc for u in value):
        raise ConfigError(_WHERE, "notifications.urls", "must be a list of http(s) URLs")
    return list(value)


def _positive(args: dict[str, Any], key: str, default: float) -> float:
    value = args.get(key, default)
    return valid_number(value, key, above=0, error=_config_error(value))


def _config_error(value: Any) -> Refuse:
    """The refusal of a bad arg: a ConfigError naming the notifications setting and the value given."""
    return lambda name, expected: ConfigError(_WHERE, name, f"must be {expected}, not {value!r}")


def _shown(url: str) -> str:
    """A URL as receipts and status show it: without its query or credentials, which may hold a token."""
    parts = urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
