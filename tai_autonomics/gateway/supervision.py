"""The live supervision tree, walked with ``which_children`` from the root supervisor.

Sibling supervisors are asked concurrently; a supervisor that cannot answer (restarting, say)
is shown with ``"children": null`` and an ``error`` code rather than failing the whole walk,
so an operator sees the rest of the tree while part of it recovers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from tai_autonomics.actors import supervisor_api
from tai_autonomics.gateway.bridge import ActorBridge
from tai_autonomics.gateway.errors import ApiError


async def walk(bridge: ActorBridge, root: str) -> dict[str, Any]:
    """``{"name", "type": "supervisor", "children": [child..., each with its own children]}``.

    The root's own failure to answer is the caller's error (503); below it, failures are shown.
    """
    return {"name": root, "type": "supervisor", "children": await _children(bridge, root)}


async def _children(bridge: ActorBridge, supervisor: str) -> list[dict[str, Any]]:
    children = await supervisor_api.awhich_children(bridge, supervisor)
    return list(await asyncio.gather(*(_expand(bridge, child) for child in children)))


async def _expand(bridge: ActorBridge, child: dict[str, Any]) -> dict[str, Any]:
    if child.get("type") != "supervisor" or child.get("state") != "running":
        return child
    try:
        return {**child, "children": await _children(bridge, child["name"])}
    except ApiError as exc:
        return {**child, "children": None, "error": exc.code}


def edges(tree: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ``(supervisor name, child)`` pair of a walked tree, depth first."""
    for child in tree.get("children") or ():
        yield tree["name"], child
        yield from edges(child)


def nodes(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a walked tree, the root first, then depth first."""
    yield tree
    for _, child in edges(tree):
        yield child
