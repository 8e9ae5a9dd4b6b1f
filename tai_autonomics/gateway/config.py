"""What the gateway is configured with: the release file's ``[gateway]`` table, the environment
and ``--port``, resolved once at start into a frozen :class:`GatewayConfig`.

Release files hold only scalars and never secrets, so the tables the gateway needs are spelled
as keys: ``allow_<Actor> = "type type"`` (message types the generic actor routes may send),
``<role>_emails = "a@x, b@y"`` (Google identities → role). Local tokens come only from the
environment (``TAI_TOKEN_SERVICE`` ...).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tai_autonomics.actors.names import (
    ACQUISITION,
    CERT_MANAGER,
    INSURANCE_CLIENT,
    PRICING,
    PROD_MODE,
    PUBLISHER,
    RECEIPT_LEDGER,
)
from tai_autonomics.errors import ConfigError
from tai_autonomics.validation import valid_int, valid_number

ROLES = ("service", "auditor", "admin")
TOKEN_ENV = {role: f"TAI_TOKEN_{role.upper()}" for role in ROLES}
DEFAULT_PORT = 8080
LOOPBACK = "127.0.0.1"
EVERY_INTERFACE = "0.0.0.0"
MIN_TOKEN_LENGTH = 16  # a guessable token is worse than none: refuse to start with one
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")

#: message types the generic actor routes may send when the release file does not say otherwise
DEFAULT_ALLOWED: dict[str, tuple[str, ...]] = {
    "root": ("which_children", "count_children"),
    "operations": ("which_children", "count_children"),
    RECEIPT_LEDGER: ("status", "receipt", "proof", "checkpoint", "consistency", "receipts", "usage", "operation"),
    CERT_MANAGER: ("status",),
    INSURANCE_CLIENT: ("status",),
    PROD_MODE: ("status",),
    PRICING: ("status",),
    PUBLISHER: ("status",),
    ACQUISITION: ("status",),
}
#: runtime introspection every actor answers; the only ``$`` types the gateway lets through
ADMIN_TYPES = ("$info", "$state")

#: ``[gateway]`` keys that set a field of :class:`GatewayConfig` (defaults there), and their type;
#: ``trace_project_env`` names the variable holding the project of Cloud Logging trace names
_SCALARS = {"host": str, "max_in_flight": int, "workers": int, "call_timeout_s": float, "max_body_bytes": int,
            "max_connections": int, "google_audience": str, "google_certs_url": str, "trace_project_env": str,
            "drain_s": float}
MAX_DRAIN_S = 9.0  # Cloud Run kills 10 s after SIGTERM: the rest of the stop needs the last second
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class GatewayConfig:
    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    #: requests waiting on an actor at once; beyond it, 503 ``overloaded`` (overload is a cliff
    #: in thespian: see docs/performance.md, "Calibration")
    max_in_flight: int = 64
    #: threads making blocking actor calls, each with its own thespian context
    workers: int = 16
    call_timeout_s: float = 5.0
    #: after SIGTERM, how long operations in flight may take to finish before each still waiting
    #: on an outside party is recorded as interrupted (docs/specification.md §11: 8 of Cloud Run's 10 s)
    drain_s: float = 8.0
    max_body_bytes: int = 1024 * 1024
    #: open HTTP connections at once; beyond it a new one gets 503 ``too_many_connections`` and is
    #: closed. None: half the process's descriptor limit (:func:`tai_autonomics.httpserve.default_max_connections`)
    max_connections: int | None = None
    root: str = "root"
    tokens: Mapping[str, str] = field(default_factory=dict)  # role → local bearer token
    google_audience: str = ""  # empty: Google ID tokens are not accepted
    google_certs_url: str = GOOGLE_CERTS_URL
    google_roles: Mapping[str, str] = field(default_factory=dict)  # email → role
    allowed: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ALLOWED))
    trace_project: str = ""

    def __repr__(self) -> str:  # tokens are secrets: never in a log line or a traceback
        return f"GatewayConfig(host={self.host!r}, port={self.port}, roles={sorted(self.tokens)})"


def resolve_port(cli_port: int | None, environ: Mapping[str, str]) -> int:
    """``--port``, else ``$PORT`` (Cloud Run sets it), else 8080."""
    if cli_port is not None:
        return _port(cli_port, "--port")
    if environ.get("PORT"):
        try:
            return _port(int(environ["PORT"]), "$PORT")
        except ValueError:
            raise ConfigError("$PORT", "", f"must be a port number, got {environ['PORT']!r}") from None
    return DEFAULT_PORT


def resolve_host(cli_host: str | None, configured: str | None, environ: Mapping[str, str],
                 source: str = "[gateway]") -> str:
    """Where the gateway listens: ``--host``, else ``$TAI_HOST``, else the release file's
    ``[gateway] host``, else every interface on Cloud Run (it sets ``$K_SERVICE``, and its front
    end reaches the container only from outside), else loopback.

    Explicit choices come first so an operator can always narrow the address; exposure beyond
    loopback is never a default of its own. Each must be an IP address: a host name would be
    resolved at bind time to whichever address the resolver gives first."""
    for value, where, key in ((cli_host, "--host", ""), (environ.get("TAI_HOST") or None, "$TAI_HOST", ""),
                              (configured, source, "gateway.host")):
        if value is not None:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                raise ConfigError(where, key, f'must be an IP address (e.g. "{LOOPBACK}", or "{EVERY_INTERFACE}" '
                                              f'for every interface), got {value!r}') from None
    return EVERY_INTERFACE if environ.get("K_SERVICE") else LOOPBACK


def _port(value: int, source: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(source, "", f"must be a port number 1-65535, got {value}")
    return value


def gateway_config(section: Mapping[str, Any], *, port: int, root: str, environ: Mapping[str, str],
                   source: str = "[gateway]", host: str | None = None) -> GatewayConfig:
    """The gateway's configuration from a release file's ``[gateway]`` table (already checked to
    hold only scalars), ``--host`` and the environment (the address, local tokens, the trace
    project)."""
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(source, f"gateway.{key}", reason)

    def must_be(key: str, expected: str) -> ConfigError:
        return fail(key, f"must be {expected}")

    values: dict[str, Any] = {}
    allowed = dict(DEFAULT_ALLOWED)
    google_roles: dict[str, str] = {}
    for key, value in section.items():
        if key in _SCALARS:
            kind = _SCALARS[key]
            if kind is float:
                value = valid_number(value, key, above=0, error=must_be)
            elif kind is int:
                value = valid_int(value, key, minimum=1, error=must_be)
            elif not isinstance(value, kind):
                raise fail(key, f"must be a {kind.__name__}")
            if key == "drain_s" and isinstance(value, float) and value > MAX_DRAIN_S:
                raise fail(key, f"must be at most {MAX_DRAIN_S:g} s: Cloud Run kills the instance 10 s after SIGTERM")
            values[key] = value
        elif key.startswith("allow_") and isinstance(value, str) and _NAME.fullmatch(key[6:]):
            types = tuple(value.replace(",", " ").split())
            if any(t.startswith("$") for t in types):
                raise fail(key, f"{', '.join(ADMIN_TYPES)} are always allowed; other $ types never")
            allowed[key[6:]] = types
        elif key.endswith("_emails") and key[:-7] in ROLES and isinstance(value, str):
            google_roles.update({email.strip().lower(): key[:-7] for email in value.split(",") if email.strip()})
        else:
            raise fail(key, f"unknown key or wrong type (expected one of {', '.join(_SCALARS)}, "
                            f"allow_<Actor>, <role>_emails with role one of {', '.join(ROLES)})")
    values["host"] = resolve_host(host, values.get("host"), environ, source)
    tokens = {role: environ.get(env, "") for role, env in TOKEN_ENV.items()}
    for role, token in tokens.items():
        if token and len(token) < MIN_TOKEN_LENGTH:  # name the variable, never the value
            raise ConfigError(f"${TOKEN_ENV[role]}", "", f"a token must be at least {MIN_TOKEN_LENGTH} characters")
    given = [token for token in tokens.values() if token]
    if len(set(given)) != len(given):  # one token for two roles would grant the wider one to both
        raise ConfigError("$TAI_TOKEN_*", "", "each role needs its own token; two of them are the same")
    project = environ.get(values.pop("trace_project_env", "GOOGLE_CLOUD_PROJECT"), "")
    return GatewayConfig(port=port, root=root, tokens={r: t for r, t in tokens.items() if t},
                         google_roles=google_roles, allowed=allowed, trace_project=project, **values)
