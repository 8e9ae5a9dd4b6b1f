"""Shared fixtures: one fixed "now", and every scenario made once per maker per session."""

from __future__ import annotations

import pytest
from trust_makers import NOW, CryptographyMaker, OpensslMaker, World, build_world


@pytest.fixture(scope="session")
def openssl_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(OpensslMaker(tmp_path_factory.mktemp("openssl"), NOW), NOW)


@pytest.fixture(scope="session")
def cryptography_world() -> World:
    return build_world(CryptographyMaker(NOW), NOW)


@pytest.fixture(params=["openssl", "cryptography"])
def world(request: pytest.FixtureRequest) -> World:
    return request.getfixturevalue(f"{request.param}_world")
