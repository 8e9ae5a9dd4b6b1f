"""Release files (rel/*.toml): parsed strictly, paths relative to the file, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tai_autonomics.config import ReleaseConfig, load_release, packaged_supervision
from tai_autonomics.errors import ConfigError
from tai_autonomics.runtime import load_tree

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["dev", "staging", "prod"])
def test_shipped_release_files_load(name: str) -> None:
    release = load_release(REPO / "rel" / f"{name}.toml")
    assert release.profile == name
    assert release.system.bind == "127.0.0.1"
    load_tree(release.tree_file())
    context = release.context()
    assert context["profile"] == name and Path(context["data_dir"]).is_absolute()


def test_prod_names_secrets_by_environment_variable_only() -> None:
    text = (REPO / "rel" / "prod.toml").read_text()
    assert "_env" in text
    assert "BEGIN" not in text and "token =" not in text


def test_defaults_are_the_dev_profile() -> None:
    release = load_release(None)
    assert (release.profile, release.mode, release.data_dir) == ("dev", "prod", Path("var"))


def test_paths_in_sections_are_relative_to_the_file(tmp_path: Path) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text('[trust]\nanchor = "ca/ca.pem"\nexpected_issuer = "CN=x"\n[ledger]\nkey_env = "LEDGER_KEY"\n')
    context = load_release(rel).context()
    assert context["trust"] == {"anchor": str(tmp_path / "ca" / "ca.pem"), "expected_issuer": "CN=x"}
    assert context["ledger"] == {"key_env": "LEDGER_KEY"}


@pytest.mark.parametrize(("text", "key"), [
    ('profile = "qa"', "profile"),
    ('mode = "chaos"', "mode"),
    ('surprise = 1', "surprise"),
    ('[system]\nbase = "multiprocUDPBase"', "system.base"),
    ('[system]\nadmin_port = true', "system.admin_port"),
    ('[system]\nlog_level = "LOUD"', "system.log_level"),
    ('[system]\nextra = 1', "system.extra"),
    ('[ledger]\nkey = { nested = 1 }', "ledger.key"),
    ('ledger = 3', "ledger"),
    ('data_dir = ""', "data_dir"),
    ('supervision = ""', "supervision"),
    ("supervision = 3", "supervision"),
])
def test_bad_release_files_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_release(rel)
    assert err.value.key == key and err.value.file == str(rel)


def test_unreadable_release_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_release(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("profile = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_release(bad)
    assert isinstance(load_release(None), ReleaseConfig)


def test_the_dev_profile_certificate_lifetime(tmp_path: Path) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text('profile = "dev"\n[sandbox]\ncert_validity_s = 40\n')
    assert load_release(rel).sandbox_cert_validity_s == 40.0
    rel.write_text('profile = "dev"\n')
    assert load_release(rel).sandbox_cert_validity_s is None  # the defaults: 365 days, renewals 90


@pytest.mark.parametrize(("text", "key", "reason"), [
    ("[sandbox]\ncert_validity_s = 0", "sandbox.cert_validity_s", "must be a number of seconds > 0"),
    ("[sandbox]\ncert_validity_s = -5", "sandbox.cert_validity_s", "got -5"),
    ("[sandbox]\ncert_validity_s = nan", "sandbox.cert_validity_s", "got nan"),
    ("[sandbox]\ncert_validity_s = 315360001", "sandbox.cert_validity_s", "at most 315360000 (3650 days)"),
    ('[sandbox]\ncert_validity_s = "40"', "sandbox.cert_validity_s", "got '40'"),
    ("[sandbox]\ncert_validity_s = true", "sandbox.cert_validity_s", "got True"),
    ("[sandbox]\ncert_validity_days = 1", "sandbox.cert_validity_days",
     "unknown key (expected one of cert_validity_s)"),
    ("sandbox = 40", "sandbox", "must be a table"),
    ('profile = "staging"\n[sandbox]\ncert_validity_s = 40', "sandbox",
     "only the dev profile starts a sandbox (this file's profile is 'staging')"),
])
def test_a_bad_sandbox_table_names_the_key_and_why(tmp_path: Path, text: str, key: str, reason: str) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_release(rel)
    assert err.value.key == key and reason in str(err.value)


@pytest.mark.parametrize(("text", "auto"), [
    ("", True),  # the dev profile: a free admin port per data dir (devprofile.admin_port)
    ('profile = "dev"\n[system]\nadmin_port = 19600', False),  # a port the file sets is that port
    ('profile = "staging"', False),  # one daemon per host: the fixed default
])
def test_only_the_dev_profile_picks_its_admin_port(tmp_path: Path, text: str, auto: bool) -> None:
    rel = tmp_path / "r.toml"
    rel.write_text(text + "\n")
    assert load_release(rel).admin_port_auto is auto
    assert load_release(None).admin_port_auto


def test_which_supervision_tree_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--supervision / the release file's key, then ./supervision.toml, then the packaged tree."""
    monkeypatch.chdir(tmp_path)
    packaged = packaged_supervision()
    assert packaged.name == "supervision.toml" and packaged.parent.name == "tai_autonomics"
    assert load_release(None).tree_file() == packaged  # nothing here: the tree shipped in the package
    (tmp_path / "supervision.toml").write_text(packaged.read_text())
    assert load_release(None).tree_file() == Path("supervision.toml")  # a tree in the current directory
    rel = tmp_path / "rel" / "r.toml"
    rel.parent.mkdir()
    rel.write_text('supervision = "mine.toml"\n')
    assert load_release(rel).tree_file() == tmp_path / "rel" / "mine.toml"  # the release file's, relative to it
    rel.write_text('profile = "staging"\n')
    assert load_release(rel).tree_file() == Path("supervision.toml")


_SCALARS = st.one_of(st.text(max_size=12), st.integers(-2**63, 2**63 - 1), st.booleans(), st.floats(),
                     st.sampled_from(["dev", "staging", "prod", "eval", "multiprocTCPBase", "simpleSystemBase",
                                      "INFO", "../var", ""]))
_KEYS = st.sampled_from(sorted({"profile", "mode", "supervision", "data_dir", "system", "sandbox", "ledger", "insurer",
                                "gateway", "base", "admin_port", "bind", "log_level", "cert_validity_s", "x"}))
_TABLES = st.dictionaries(_KEYS, st.one_of(_SCALARS, st.dictionaries(_KEYS, _SCALARS, max_size=4)), max_size=6)


def _toml(data: dict) -> str:
    """A release file's text (scalars as JSON spellings, which TOML reads; NaN and inf make it invalid)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in data.items() if not isinstance(value, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += [f"[{key}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict))]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_TABLES, raw=st.none() | st.text(max_size=200))
def test_any_release_file_loads_or_is_one_config_error_naming_it(tmp_path: Path, data: dict, raw: str | None) -> None:
    """Issue 14: release files from nearly right to nonsense give a release or a ConfigError naming the file."""
    path = tmp_path / "fuzz.toml"
    path.write_text(_toml(data) if raw is None else raw, encoding="utf-8")
    try:
        release = load_release(path)
    except ConfigError as exc:
        assert str(path) in str(exc), exc
        return
    assert isinstance(release, ReleaseConfig) and release.profile in ("dev", "staging", "prod")
