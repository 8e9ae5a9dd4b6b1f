"""Release configuration: the analogue of OTP's ``sys.config`` + ``vm.args`` (files in ``rel/``).

Secrets are never in these files, only the names of environment variables holding them.
With no file, the dev profile's defaults apply (data in ``./var``).

Which supervision tree runs, first match wins (:meth:`ReleaseConfig.tree_file`):

1. ``foreground --supervision FILE``;
2. the release file's ``supervision = "FILE"`` (relative to the release file);
3. ``./supervision.toml`` in the current directory, if there is one;
4. the tree shipped in the package (``tai_autonomics/supervision.toml``), so an installed wheel
   runs from any directory.

The explicit choices (1, 2) come first; a tree file in the current directory overrides only the
default, as it did before the tree shipped in the package.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tai_autonomics.errors import ConfigError
from tai_autonomics.logs import LOG_LEVELS
from tai_autonomics.runtime import NodeConfig
from tai_autonomics.runtime.node import BASES
from tai_autonomics.validation import is_int, is_number

PROFILES = ("dev", "staging", "prod")
MODES = ("eval", "prod")
_SECTIONS = ("ledger", "insurer", "trust", "gateway", "customer", "marketplace", "notifications")
_TOP_KEYS = {"profile", "mode", "supervision", "data_dir", "system", "sandbox", *_SECTIONS}
_SYSTEM_KEYS = {"base", "admin_port", "bind", "log_level"}
_SANDBOX_KEYS = {"cert_validity_s"}
MAX_CERT_VALIDITY_S = 3650 * 86400  # the dev CA's own lifetime: a certificate cannot outlive its issuer
SUPERVISION_FILE = "supervision.toml"


def packaged_supervision() -> Path:
    """The default supervision tree, shipped as package data (a file on disk: wheels and
    editable installs both unpack the package)."""
    return Path(str(importlib.resources.files(__package__) / SUPERVISION_FILE))


def default_supervision() -> Path:
    """``./supervision.toml`` if the current directory has one, else the packaged tree."""
    local = Path(SUPERVISION_FILE)
    return local if local.is_file() else packaged_supervision()


@dataclass(frozen=True)
class ReleaseConfig:
    profile: str = "dev"
    mode: str = "prod"
    #: the tree file the release names (``--supervision`` or ``supervision = ...``); None: the
    #: default (see :meth:`tree_file`)
    supervision: Path | None = None
    data_dir: Path = Path("var")
    system: NodeConfig = field(default_factory=NodeConfig)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "<dev defaults>"
    #: ``[sandbox] cert_validity_s`` (dev profile only): how long the certificates of the dev
    #: profile's insurer are valid, the first one (dev CA) and every renewal; None: 365 / 90 days
    sandbox_cert_validity_s: float | None = None
    #: the dev profile with no ``[system] admin_port``: the actor admin port is one picked free at
    #: the first start and recorded in the data dir (see devprofile.admin_port), so dev daemons on
    #: different data dirs run side by side; ``system.admin_port`` is then not used
    admin_port_auto: bool = True

    def tree_file(self) -> Path:
        """The supervision tree this release runs (the precedence is in the module docstring)."""
        return self.supervision if self.supervision is not None else default_supervision()

    def context(self) -> dict[str, Any]:
        """What every actor is handed in ``args["context"]``: where things are, not secrets
        (a secret is named by the environment variable that holds it, e.g. ``key_env``)."""
        return {"profile": self.profile, "mode": self.mode, "data_dir": str(self.data_dir.resolve()),
                **{name: dict(self.sections.get(name, {})) for name in _SECTIONS}}


def load_release(path: str | Path | None) -> ReleaseConfig:
    """Read a release file (paths in it are relative to the file); None gives the dev profile."""
    if path is None:
        return ReleaseConfig()
    source = str(path)
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read file: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(source, "", f"not valid TOML: {exc}") from None
    return _parse(data, source, Path(path).resolve().parent)


def _parse(data: dict[str, Any], source: str, base_dir: Path) -> ReleaseConfig:
    def fail(key: str, reason: str) -> ConfigError:
        return ConfigError(source, key, reason)

    for key in sorted(set(data) - _TOP_KEYS):
        raise fail(key, f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
    profile = data.get("profile", "dev")
    if profile not in PROFILES:
        raise fail("profile", f"unknown profile {profile!r} (expected {', '.join(PROFILES)})")
    mode = data.get("mode", "prod")
    if mode not in MODES:
        raise fail("mode", f"unknown mode {mode!r} (expected {', '.join(MODES)})")
    paths: dict[str, Path | None] = {}
    for key, default in (("supervision", None), ("data_dir", "../var")):  # no supervision: the default tree
        value = data.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(key, "must be a non-empty path string")
        paths[key] = None if value is None else (base_dir / value).resolve()
    system = data.get("system", {})
    if not isinstance(system, dict):
        raise fail("system", "must be a table")
    for key in sorted(set(system) - _SYSTEM_KEYS):
        raise fail(f"system.{key}", f"unknown key (expected one of {', '.join(sorted(_SYSTEM_KEYS))})")
    base = system.get("base", NodeConfig.base)
    if base not in BASES:
        raise fail("system.base", f"unknown thespian base {base!r} (expected {', '.join(BASES)})")
    port = system.get("admin_port", NodeConfig.admin_port)
    admin_port_auto = profile == "dev" and "admin_port" not in system
    if not is_int(port) or not 1 <= port <= 65535:
        raise fail("system.admin_port", f"must be a port number 1-65535, got {port!r}")
    bind = system.get("bind", "127.0.0.1")
    if not isinstance(bind, str) or not bind:
        raise fail("system.bind", "must be an address string")
    level = system.get("log_level", "INFO")
    if level not in LOG_LEVELS:
        raise fail("system.log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    cert_validity_s = _sandbox(data.get("sandbox"), profile, fail)
    sections = {}
    for name in _SECTIONS:
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise fail(name, "must be a table")
        for key, value in table.items():
            if not isinstance(value, (str, int, float, bool)) or isinstance(value, dict):
                raise fail(f"{name}.{key}", "must be a string, number or boolean")
        sections[name] = {k: str((base_dir / v).resolve()) if _is_path_key(k) and isinstance(v, str) else v
                          for k, v in table.items()}
    data_dir = paths["data_dir"]
    assert data_dir is not None  # it has a default
    return ReleaseConfig(profile=profile, mode=mode, supervision=paths["supervision"],
                         data_dir=data_dir,
                         system=NodeConfig(base=base, admin_port=port, bind=bind, log_level=level),
                         sections=sections, source=source, sandbox_cert_validity_s=cert_validity_s,
                         admin_port_auto=admin_port_auto)


def _sandbox(table: Any, profile: str, fail: Callable[[str, str], ConfigError]) -> float | None:
    """The ``[sandbox]`` table: only the dev profile starts a sandbox, so only it may have one."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise fail("sandbox", "must be a table")
    if profile != "dev":
        raise fail("sandbox", f"only the dev profile starts a sandbox (this file's profile is {profile!r})")
    for key in sorted(set(table) - _SANDBOX_KEYS):
        raise fail(f"sandbox.{key}", f"unknown key (expected one of {', '.join(sorted(_SANDBOX_KEYS))})")
    value = table.get("cert_validity_s")
    if value is None:
        return None
    if not is_number(value) or not 0 < value <= MAX_CERT_VALIDITY_S:
        raise fail("sandbox.cert_validity_s",
                   f"must be a number of seconds > 0 and at most {MAX_CERT_VALIDITY_S} (3650 days), got {value!r}")
    return float(value)


def _is_path_key(key: str) -> bool:
    """Keys naming files or directories are resolved relative to the release file."""
    return key.endswith(("_file", "_dir")) or key == "anchor"
