"""The production start's checks: every setting a non-dev release needs, checked before anything
starts, every problem reported at once, and the store and the insurer reached within seconds.

Why here and not only in the actors: each actor checks its own settings when it starts, so a
start failed on the first actor's first missing setting (six starts to find six problems), and
an unreachable Firestore surfaced only after the client's own retries (47 s, without the word
Firestore). These checks read the same settings the actors will (the release file's tables and
the environment variables they name) with the same loaders, and name the release file and the key.

Codes (stable): ``config_missing`` (a setting or the environment variable it names is not set),
``config_invalid`` (set, but unusable: unreadable file, bad PEM, a placeholder URL),
``store_unreachable`` and ``insurer_unreachable`` (no answer within :data:`REACH_DEADLINE_S`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from tai_autonomics.config import ReleaseConfig
from tai_autonomics.errors import ConfigError, TaiError
from tai_autonomics.ledger import load_ledger_key
from tai_autonomics.trust import CertificateVerifier
from tai_autonomics.trust import CertManager as Core
from tai_autonomics.trust.cert_manager import CURRENT_FILE
from tai_autonomics.trust.insurer_client import API_PREFIX
from tai_autonomics.trust.insurer_signature import load_public_keys

REACH_TIMEOUT_S = 5.0
"""One attempt at the store or the insurer (no retries: the start reports, the operator fixes)."""
REACH_DEADLINE_S = 8.0
"""All reachability probes run at once and are given up after this: the start fails in < 10 s."""


class SettingMissing(ConfigError):
    """A setting the release needs is not set (in the file, or in the environment variable it names)."""

    code = "config_missing"


class Unreachable(TaiError):
    """An outside party the daemon needs at start did not answer (a subclass names which)."""


class StoreUnreachable(Unreachable):
    """The ledger's store (Firestore) cannot be reached, or refuses the daemon's credentials."""

    code = "store_unreachable"


class InsurerUnreachable(Unreachable):
    """The insurer's API did not answer at all."""

    code = "insurer_unreachable"


@dataclass(frozen=True)
class _Probe:
    """One outside party to reach: the class of its problem, its name in it, how to reach it."""

    error: type[Unreachable]
    party: str
    run: Callable[[], None]


_Probes = dict[str, _Probe]


def check(release: ReleaseConfig, environ: Mapping[str, str]) -> list[TaiError]:
    """Every problem with ``release``'s settings (non-dev profiles), the reachability of the
    ledger's store and of the insurer included; empty if it may start."""
    problems: list[TaiError] = []
    probes: _Probes = {}
    _ledger(release, environ, problems, probes)
    if release.mode == "prod":  # outside prod the insurer and the certificate may be absent (eval)
        _insurer(release, environ, problems, probes)
        _trust(release, problems)
    for party in ("customer", "marketplace"):
        _party_url(release, party, problems)
    problems.extend(_reach(probes))
    return problems


def setting(release: ReleaseConfig, table: str, key: str, environ: Mapping[str, str], what: str) -> str:
    """``[table] key``, else the environment variable named by ``[table] key_env`` (how release
    files name deployment-specific values); :class:`SettingMissing` naming both if neither is set."""
    section = release.sections.get(table, {})
    if section.get(key):
        return str(section[key])
    variable = section.get(f"{key}_env")
    if variable:
        if environ.get(variable):
            return environ[variable]
        raise SettingMissing(release.source, f"{table}.{key}_env",
                             f"environment variable {variable} ({what}) is unset or empty")
    raise SettingMissing(release.source, f"{table}.{key}", f"not set ({what}); set {key} or {key}_env")


def _ledger(release: ReleaseConfig, environ: Mapping[str, str], problems: list[TaiError],
            probes: _Probes) -> None:
    ledger = release.sections.get("ledger", {})
    key_file, key_env = ledger.get("key_file"), ledger.get("key_env")
    if key_env and not key_file and not environ.get(key_env):
        problems.append(SettingMissing(release.source, "ledger.key_env",
                                       f"environment variable {key_env} (the ledger key) is unset or empty"))
    elif not key_file and not key_env:
        problems.append(SettingMissing(release.source, "ledger.key_file",
                                       "no ledger key: set key_file or key_env (only the dev profile makes one)"))
    else:
        _collect(problems, "ledger.key_file" if key_file else "ledger.key_env", release,
                 lambda: load_ledger_key(key_file=key_file, key_env=key_env, environ=environ))
    store = ledger.get("store", "sqlite")
    if store == "firestore":
        project = None
        if ledger.get("firestore_project_env"):
            try:
                project = setting(release, "ledger", "firestore_project", environ, "the Firestore project")
            except TaiError as exc:
                problems.append(exc)
                return
        name = str(ledger.get("firestore_ledger", "ledger"))
        probes["firestore"] = _Probe(StoreUnreachable, "Firestore", lambda: _reach_firestore(project, name))
    elif store != "sqlite":
        problems.append(ConfigError(release.source, "ledger.store",
                                    f"unknown store {store!r} (expected sqlite or firestore)"))


def _insurer(release: ReleaseConfig, environ: Mapping[str, str], problems: list[TaiError],
             probes: _Probes) -> None:
    values = {}
    for key, what in (("url", "the insurer's URL"), ("policy_id", "the insurance policy id"),
                      ("public_key_file", "the insurer's signing key")):
        try:
            values[key] = setting(release, "insurer", key, environ, what)
        except TaiError as exc:
            problems.append(exc)
    if "public_key_file" in values:
        _collect(problems, "insurer.public_key_file", release,
                 lambda: load_public_keys(_read(values["public_key_file"])))
    if "url" in values and _checked_url(release, "insurer.url", values["url"], problems):
        probes["insurer"] = _Probe(InsurerUnreachable, "the insurer", lambda: _reach_insurer(values["url"]))


def _trust(release: ReleaseConfig, problems: list[TaiError]) -> None:
    trust = release.sections.get("trust", {})
    if not trust.get("anchor"):
        problems.append(SettingMissing(release.source, "trust.anchor", "not set (the insurer CA's certificate file)"))
        return
    verifier = _collect(problems, "trust.anchor", release, lambda: CertificateVerifier.from_files(
        trust["anchor"], trust.get("intermediates") or (), expected_issuer=trust.get("expected_issuer") or None))
    # Beside a Firestore ledger the certificate is in Firestore, shared by the instances: CertManager reads
    # it at the start (a prod start without one fails with the reason); the store is probed with the ledger.
    if release.sections.get("ledger", {}).get("store") == "firestore":
        return
    cert_dir = Path(trust.get("cert_dir") or release.data_dir / "cert")
    if (cert_dir / CURRENT_FILE).exists():
        if verifier is not None:  # as CertManager loads it: an expired one loads, then goes read_only
            _collect(problems, "trust.cert_dir", release,
                     lambda: Core(cert_dir, verifier).load(outside_validity_ok=True))
    elif not (trust.get("cert_file") and trust.get("key_file")):
        problems.append(SettingMissing(release.source, "trust.cert_dir",
                                       f"no insurance certificate at {cert_dir / CURRENT_FILE}, and no trust.cert_file "
                                       f"and trust.key_file to install one"))


def _party_url(release: ReleaseConfig, party: str, problems: list[TaiError]) -> None:
    url = release.sections.get(party, {}).get("url")
    if not url:
        problems.append(SettingMissing(release.source, f"{party}.url", f"not set (the {party}'s API base URL)"))
    else:
        _checked_url(release, f"{party}.url", str(url), problems)


def _checked_url(release: ReleaseConfig, key: str, url: str, problems: list[TaiError]) -> bool:
    """An http(s) URL with a host that can exist (``.invalid`` is the release files' placeholder)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        problems.append(ConfigError(release.source, key, f"not a URL: {exc}"))
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host:
        problems.append(ConfigError(release.source, key, f"must be an http(s) URL with a host, got {url!r}"))
        return False
    if parsed.host == "invalid" or parsed.host.endswith(".invalid"):
        problems.append(ConfigError(release.source, key, f"{url} is a placeholder (.invalid never resolves): set "
                                                         f"the real endpoint for this environment"))
        return False
    return True


def _collect(problems: list[TaiError], key: str, release: ReleaseConfig, load: Callable[[], Any]) -> Any:
    """``load()``, or None with its refusal (or OS error) recorded as an invalid ``key``."""
    try:
        return load()
    except TaiError as exc:
        problems.append(ConfigError(release.source, key, f"{exc.message} ({exc.code})"))
    except (OSError, ValueError) as exc:
        problems.append(ConfigError(release.source, key, str(exc)))
    return None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None


def _reach_firestore(project: str | None, name: str) -> None:
    """One read of the ledger's head document, no retries: reachable, authorised, project exists."""
    from google.cloud import firestore  # only a Firestore release pays for importing the client library

    where = f"Firestore (project {project or 'from the credentials'})"
    try:
        client = firestore.Client(project=project)
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, ValueError, OSError) as exc:
        raise StoreUnreachable(f"{where}: cannot make a client: {exc}") from None
    try:
        client.collection("ledgers").document(name).get(retry=None, timeout=REACH_TIMEOUT_S)
    except (gexc.GoogleAPIError, auth_exc.GoogleAuthError) as exc:
        raise StoreUnreachable(f"{where} cannot be reached: {str(exc)[:300]}") from None
    finally:
        client.close()


def _reach_insurer(url: str) -> None:
    """Any HTTP answer from the insurer's key endpoint: it is there (the policy is ProdMode's start check)."""
    try:
        httpx.get(url.rstrip("/") + API_PREFIX + "/keys", timeout=REACH_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise InsurerUnreachable(f"the insurer at {url} cannot be reached: {type(exc).__name__}: {exc}") from None


def _reach(probes: _Probes) -> list[TaiError]:
    """Run every probe at once on daemon threads and wait at most :data:`REACH_DEADLINE_S` in all;
    a probe still waiting then is reported as not answering (its thread is left to its own
    timeout, and does not hold up the process's exit)."""
    results: dict[str, TaiError | None] = {}

    def run(name: str, probe: _Probe) -> None:
        try:
            probe.run()
            results[name] = None
        except TaiError as exc:
            results[name] = exc
        except Exception as exc:  # noqa: BLE001 - on a thread: still that party's problem, said in one line
            results[name] = probe.error(f"{probe.party}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=item, daemon=True, name=f"preflight-{item[0]}")
               for item in probes.items()]
    for thread in threads:
        thread.start()
    end = time.monotonic() + REACH_DEADLINE_S
    for thread in threads:
        thread.join(max(0.0, end - time.monotonic()))
    problems: list[TaiError] = []
    for name, probe in probes.items():
        if name not in results:
            problems.append(probe.error(f"{probe.party} did not answer within {REACH_DEADLINE_S:g} s"))
        elif (problem := results[name]) is not None:
            problems.append(problem)
    return problems
