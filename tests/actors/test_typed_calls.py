"""No module sends an actor a message-type string of its own: the actor's ``_api`` module does.

As :mod:`tests.actors.test_names` holds actor names to one module, this holds each actor's
message types to the actor's own module and its typed client module (``actors/<x>_api.py``): a
call site elsewhere that writes ``call(PROD_MODE, "mode")`` is a second spelling of ProdMode's
protocol that a rename would miss. The scan finds a call whose positional arguments name an actor
constant of :mod:`tai_autonomics.actors.names` followed by a string literal (``bridge.call``,
``client.call``, ``call_actor``, the gateway's ``_operation`` helper alike).
"""

from __future__ import annotations

import ast
from pathlib import Path

import tai_autonomics
from tai_autonomics.actors import names

PACKAGE = Path(tai_autonomics.__file__).parent
ACTOR_CONSTANTS = frozenset(key for key, value in vars(names).items() if key.isupper() and isinstance(value, str))

#: the modules allowed to spell an actor's message types: the actor's own and its client module
OWNERS = {
    "PROD_MODE": {"actors/prod_mode.py", "actors/status_api.py"},
    "CERT_MANAGER": {"actors/cert_manager.py", "actors/status_api.py"},
    "INSURANCE_CLIENT": {"actors/insurance_client.py", "actors/status_api.py"},
    "ACQUISITION": {"actors/acquisition.py", "actors/_operation.py", "actors/operation_api.py"},
    "PUBLISHER": {"actors/publisher.py", "actors/_operation.py", "actors/operation_api.py"},
    "PRICING": {"actors/pricing.py", "actors/operation_api.py"},
}

def _literal_sends(source: str) -> set[tuple[str, str]]:
    """(actor constant, message type) of every call in ``source`` that names an actor constant
    and then a string literal among its positional arguments."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        for actor, msg in zip(node.args, node.args[1:]):
            name = actor.id if isinstance(actor, ast.Name) else actor.attr if isinstance(actor, ast.Attribute) else ""
            if name in ACTOR_CONSTANTS and isinstance(msg, ast.Constant) and isinstance(msg.value, str):
                found.add((name, msg.value))
    return found


def _scan() -> set[tuple[str, str, str]]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for actor, msg_type in _literal_sends(path.read_text(encoding="utf-8")):
            if actor in OWNERS and module not in OWNERS[actor]:
                found.add((module, actor, msg_type))
    return found


def test_the_scan_finds_literal_sends_in_each_form() -> None:
    source = '''
async def f(bridge, node, self, req):
    await bridge.call(PROD_MODE, "mode")
    node.client().call(names.ACQUISITION, "drain", None, 2.0)
    self.call_actor(CERT_MANAGER, "status", then=print)
    await _operation(req, PRICING, "quote", {})
    await bridge.call(PROD_MODE, MODE)
    await bridge.call(actor, "mode")
'''
    assert _literal_sends(source) == {("PROD_MODE", "mode"), ("ACQUISITION", "drain"), ("CERT_MANAGER", "status"),
                                      ("PRICING", "quote")}


def test_only_an_actor_and_its_api_module_spell_its_message_types() -> None:
    assert _scan() == set()


def _supervisor_sends(source: str) -> set[str]:
    """The supervisor message types that ``source`` sends as a literal (second positional argument)."""
    return {node.args[1].value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in SUPERVISOR_CALLS}


SUPERVISOR_CALLS = frozenset({"which_children", "restart_child"})


def test_only_the_supervisor_api_sends_which_children_and_restart_child() -> None:
    assert _supervisor_sends('await shell.call(parent, "restart_child", name)') == {"restart_child"}
    found = {path.relative_to(PACKAGE).as_posix() for path in sorted(PACKAGE.rglob("*.py"))
             if _supervisor_sends(path.read_text(encoding="utf-8"))}
    assert found == {"actors/supervisor_api.py"}
