"""Loading the ledger key: PEM file, environment variable, dev key; errors never show the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tai_autonomics.ledger import LedgerKey, LedgerKeyError, LedgerPublicKey, load_ledger_key


def test_key_from_file_and_from_environment(tmp_path: Path) -> None:
    key = LedgerKey.generate()
    pem = key.private_pem()
    (tmp_path / "k.pem").write_bytes(pem)
    assert load_ledger_key(key_file=tmp_path / "k.pem").key_id == key.key_id
    assert load_ledger_key(key_env="LEDGER_KEY", environ={"LEDGER_KEY": pem.decode()}).key_id == key.key_id
    assert LedgerPublicKey.from_pem(key.public.pem()).key_id == key.key_id


def test_dev_key_is_made_once_and_private(tmp_path: Path) -> None:
    first = load_ledger_key(data_dir=tmp_path / "var")
    again = load_ledger_key(data_dir=tmp_path / "var")
    assert first.key_id == again.key_id
    assert stat.S_IMODE((tmp_path / "var" / "ledger_key.pem").stat().st_mode) == 0o600


def test_signatures_verify_and_a_wrong_one_does_not(key: LedgerKey) -> None:
    signature = key.sign(b"x" * 32)
    assert key.public.verify(signature, b"x" * 32)
    assert not key.public.verify(signature, b"y" * 32)
    assert not key.public.verify(signature[:10], b"x" * 32)


@pytest.mark.parametrize(
    "load",
    [
        lambda tmp, secret: load_ledger_key(key_file=tmp / "missing.pem"),
        lambda tmp, secret: load_ledger_key(key_env="LEDGER_KEY", environ={}),
        lambda tmp, secret: load_ledger_key(key_env="LEDGER_KEY", environ={"LEDGER_KEY": secret[:-40]}),
        lambda tmp, secret: load_ledger_key(),
    ],
)
def test_key_errors_are_typed_and_never_show_the_key(tmp_path: Path, load) -> None:
    secret = LedgerKey.generate().private_pem().decode()
    with pytest.raises(LedgerKeyError) as failure:
        load(tmp_path, secret)
    body = [line for line in secret.splitlines() if not line.startswith("-----")]
    assert all(line[:20] not in str(failure.value) for line in body)


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ec.pem").write_bytes(pem)
    with pytest.raises(LedgerKeyError, match="not an Ed25519"):
        load_ledger_key(key_file=tmp_path / "ec.pem")
