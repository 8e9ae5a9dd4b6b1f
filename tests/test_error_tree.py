"""The error tree (tai_autonomics/errors.py): one class per code, each code claimed once, every
class drawn in the module's docstring and re-exported by it, and an error that crosses an actor
boundary comes back as its class, with its code, message and detail."""

from __future__ import annotations

import importlib
import pickle
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tai_autonomics
import tai_autonomics.errors as errors
from tai_autonomics.errors import ConfigError, TaiError, rebuild, registered
from tai_autonomics.gateway.errors import REFUSAL_STATUS, status_of
from tai_autonomics.runtime import ActorRestarting, Node, NodeConfig, NoSuchActor, Server, parse_tree
from tai_autonomics.trust.errors import CertExpired
from tests.helpers import free_port

REPO = Path(__file__).parent.parent
RAISER = "tests.test_error_tree:Raiser"
RELAY = "tests.runtime.actors:Relay"


class Raiser(Server):
    """Raises the error a call names (as :func:`rebuild` makes it: an instance of the registered class)."""

    def call_raise(self, request: dict[str, Any]) -> None:
        raise rebuild(request["code"], request["message"], request["detail"])

    def call_raise_config(self, key: str) -> None:
        raise ConfigError("tai.toml", key, "must be a number")


def _import_everything() -> None:
    for module in pkgutil.walk_packages(tai_autonomics.__path__, "tai_autonomics."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)


_import_everything()


def _classes() -> list[type[TaiError]]:
    """Every public error class of the package (test and private classes left out)."""
    found: list[type[TaiError]] = []

    def walk(cls: type[TaiError]) -> None:
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("tai_autonomics.") and not sub.__name__.startswith("_"):
                found.append(sub)
                walk(sub)

    walk(TaiError)
    return found


def _drawn() -> str:
    """The tree as the docstring draws it: children sorted by name, each with the code it claims."""
    lines: list[str] = []

    def draw(cls: type[TaiError], prefix: str, last: bool, top: bool = False) -> None:
        code = cls.__dict__.get("code")
        label = cls.__name__ + (f"  [{code}]" if code else "")
        lines.append(label if top else prefix + ("└── " if last else "├── ") + label)
        children = sorted((sub for sub in cls.__subclasses__()
                           if sub.__module__.startswith("tai_autonomics.") and not sub.__name__.startswith("_")),
                          key=lambda sub: sub.__name__)
        for i, child in enumerate(children):
            draw(child, "" if top else prefix + ("    " if last else "│   "), i == len(children) - 1)

    draw(TaiError, "", True, top=True)
    return "\n".join("    " + line for line in lines)


def _sample(cls: type[TaiError]) -> TaiError:
    return rebuild(cls.code, f"a {cls.__name__} on purpose", {"n": 1, "why": [cls.__name__]})


def _assert_same(got: BaseException, sent: TaiError) -> None:
    assert type(got) is type(sent)
    assert isinstance(got, TaiError)
    assert (got.code, got.message) == (sent.code, sent.message)
    assert {k: v for k, v in got.detail.items() if k != "exception"} == sent.detail


def test_each_class_claims_its_own_code_and_the_registry_answers_it() -> None:
    claiming = [cls for cls in _classes() if "code" in cls.__dict__]
    assert len(claiming) > 100
    assert len({cls.code for cls in claiming}) == len(claiming)
    for cls in claiming:
        assert registered()[cls.code] is cls, cls
    assert all(cls.__module__.startswith("tai_autonomics.") for cls in registered().values())


def test_a_second_class_claiming_a_code_is_refused_when_it_is_defined() -> None:
    with pytest.raises(TypeError, match="ledger_not_found"):
        type("AnotherNotFound", (TaiError,), {"code": "ledger_not_found", "__module__": "tests.elsewhere"})
    assert registered()["ledger_not_found"].__name__ == "NotFoundError"


def test_the_docstring_draws_the_whole_tree_with_every_code() -> None:
    doc = errors.__doc__ or ""
    assert _drawn() in doc
    for code, cls in registered().items():
        assert f"{cls.__name__}  [{code}]" in doc


def test_the_module_re_exports_every_class_and_nothing_stale() -> None:
    names = {cls.__name__ for cls in _classes()} | {"TaiError"}
    assert len(names) == len(_classes()) + 1  # class names are unique: one flat namespace
    for cls in _classes():
        assert getattr(errors, cls.__name__) is cls
    assert names <= set(errors.__all__)
    assert set(errors.__all__) - names == {"rebuild", "registered"}
    with pytest.raises(AttributeError):
        _ = errors.NoSuchError


def test_an_unknown_code_is_the_base_class_keeping_its_code() -> None:
    error = rebuild("nobody_claims_this", "m", {"k": 1})
    assert type(error) is TaiError and error.to_dict() == {"code": "nobody_claims_this", "message": "m",
                                                         "detail": {"k": 1}}


@pytest.mark.parametrize("cls", sorted(registered().values(), key=lambda cls: cls.code), ids=lambda cls: cls.code)
def test_every_class_survives_pickling(cls: type[TaiError]) -> None:
    sent = _sample(cls)
    _assert_same(pickle.loads(pickle.dumps(sent)), sent)


def test_constructor_arguments_survive_the_crossing_in_detail() -> None:
    sent = ConfigError("tai.toml", "gateway.port", "must be a number")
    got = rebuild(sent.code, sent.message, sent.detail)
    assert type(got) is ConfigError and (got.file, got.key, got.reason) == ("tai.toml", "gateway.port",
                                                                            "must be a number")


@pytest.fixture(scope="module")
def in_process() -> Iterator[Node]:
    with Node(NodeConfig(base="simpleSystemBase", admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["raiser", "relay"]}},
                                    "workers": {"raiser": {"actor": RAISER}, "relay": {"actor": RELAY}}}))
        try:
            yield node
        finally:
            node.stop_tree()


def test_every_class_is_rebuilt_as_itself_across_actor_calls(in_process: Node) -> None:
    """Straight to the callee, and through another actor (the callee's error reaches the relay
    as a reply, and the relay passes it on to its own caller). ActorRestarting is the runtime's
    own "not run, on its way out" signal: a caller follows the callee to its next incarnation
    instead of raising it, so no handler can send it back (pickling covers it above)."""
    for cls in set(registered().values()) - {ActorRestarting}:
        sent = _sample(cls)
        request = {"code": sent.code, "message": sent.message, "detail": sent.detail}
        with pytest.raises(TaiError) as direct:
            in_process.call("raiser", "raise", request)
        _assert_same(direct.value, sent)
        with pytest.raises(TaiError) as relayed:
            in_process.call("relay", "relay", {"to": "raiser", "type": "raise", "payload": request})
        _assert_same(relayed.value, sent)


def test_classes_are_rebuilt_across_processes() -> None:
    with Node(NodeConfig(base="multiprocTCPBase", admin_port=free_port())) as node:
        node.start_tree(parse_tree({"root": "root", "supervisors": {"root": {"children": ["raiser"]}},
                                    "workers": {"raiser": {"actor": RAISER}}}))
        try:
            sent = _sample(CertExpired)
            with pytest.raises(CertExpired) as expired:
                node.call("raiser", "raise", {"code": sent.code, "message": sent.message, "detail": sent.detail})
            _assert_same(expired.value, sent)
            assert expired.value.detail["exception"] == "CertExpired"  # the callee's class, as the runtime adds it
            with pytest.raises(ConfigError) as config:
                node.call("raiser", "raise_config", "gateway.port")
            assert (config.value.file, config.value.key) == ("tai.toml", "gateway.port")
            with pytest.raises(NoSuchActor):
                node.call("nobody", "raise", timeout=0.2)
        finally:
            node.stop_tree()


def _documented_statuses() -> dict[str, set[int]]:
    """docs/gateway.md's table of statuses: each code in backticks → the statuses whose rows name it."""
    table: dict[str, set[int]] = {}
    text = (REPO / "docs" / "gateway.md").read_text()
    for status, codes in re.findall(r"^\| (\d{3}) \| (.*) \|$", text, flags=re.M):
        for code in re.findall(r"`([a-z_]+)`", codes):
            table.setdefault(code, set()).add(int(status))
    return table


def test_the_gateway_answers_each_class_with_the_documented_status() -> None:
    documented = _documented_statuses()
    assert documented["ledger_not_found"] == {404}  # the table was read
    for code, cls in registered().items():
        status = status_of(rebuild(code, "m"))
        if len(documented.get(code, ())) == 1:  # invalid_request is 400, and 422 for a contract event's meaning
            assert documented[code] == {status}, code
        elif code not in documented:
            assert status == REFUSAL_STATUS, f"{code} ({cls.__name__}) answers {status} but is not in docs/gateway.md"


def test_docs_errors_md_lists_every_code_with_its_class() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([A-Za-z_]+)` \|", (REPO / "docs" / "errors.md").read_text(), re.M))
    assert rows == {code: cls.__name__ for code, cls in registered().items()}
