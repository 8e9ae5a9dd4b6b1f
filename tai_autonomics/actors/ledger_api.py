"""The ReceiptLedger's calls as its callers make them, as an OTP module wraps ``gen_server:call``.

The ledger answers ``receipts`` a page at a time (``seq > after``, at most ``limit``; see
:mod:`tai_autonomics.actors.receipt_ledger`). Reading a whole chain is a loop over those pages that
the gateway and the end-to-end tests each wrote for themselves; :func:`read_chain` (and
:func:`aread_chain` for async callers such as the gateway) is that loop, once, and the notifier,
which reads one page per poll, shares its end-of-chain rule (:func:`next_after`). The caller
passes how one page is fetched (``node.call``, the gateway's bridge, the HTTP client), so this
module depends on no transport.

The payloads are TypedDicts, so a misspelt or missing member is a type error at the caller rather
than a ``LedgerRequestInvalid`` at run time; :func:`append` and :func:`receipts` are the calls an
actor makes (``then(value, error)`` as :meth:`~tai_autonomics.runtime.Server.call_actor` takes it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict, TypeVar

from tai_autonomics.actors.names import RECEIPT_LEDGER

if TYPE_CHECKING:
    from tai_autonomics.errors import TaiError
    from tai_autonomics.runtime import Server

#: the ledger's largest page (``Ledger.receipts`` takes 1..1000)
PAGE_MAX = 1000

R = TypeVar("R", bound=Mapping[str, Any])
#: how an actor is told the ledger's answer: ``then(value, None)`` or ``then(None, error)``
Then = Callable[[Any, "TaiError | None"], None]


class Draft(TypedDict):
    """The payload of ``append``: a receipt before the ledger numbers, times and signs it."""

    kind: str
    mode: Literal["prod", "eval"]
    payload: dict[str, Any]
    chain: NotRequired[str | None]
    """The contractual chain (the policy id); None or absent for an eval receipt."""
    operation_id: NotRequired[str | None]
    effect: NotRequired[dict[str, Any]]
    """What the receipt does to shared state (``{"open": ...}`` or ``{"close": ...}``)."""


class ProofQuery(TypedDict):
    """The payload of ``proof``: the receipt's inclusion proof, in the tree of ``tree_size`` if given."""

    id: str
    tree_size: NotRequired[int]


class ReceiptsQuery(TypedDict):
    """The payload of the ledger's ``receipts`` call: the chain's receipts with ``seq > after``."""

    chain: str
    after: int
    limit: int


def receipts_query(chain: str, after: int = 0, limit: int = PAGE_MAX) -> ReceiptsQuery:
    """One page of ``chain`` after ``after``, at most ``limit`` receipts."""
    return {"chain": chain, "after": after, "limit": limit}


def proof_query(receipt_id: str, tree_size: int | None = None) -> ProofQuery:
    """The inclusion proof of ``receipt_id``, in the current tree or the one of ``tree_size`` leaves."""
    query: ProofQuery = {"id": receipt_id}
    if tree_size is not None:
        query["tree_size"] = tree_size
    return query


def append(caller: Server, draft: Draft, then: Then) -> None:
    """Append ``draft``; ``then(receipt, error)`` once the receipt is durable or refused."""
    caller.call_actor(RECEIPT_LEDGER, "append", draft, then=then)


def receipts(caller: Server, query: ReceiptsQuery, then: Then) -> None:
    """One page of a chain (:func:`receipts_query`); ``then(page, error)``."""
    caller.call_actor(RECEIPT_LEDGER, "receipts", query, then=then)


def next_after(page: Sequence[Mapping[str, Any]], limit: int) -> int | None:
    """Where the next page starts, or None if ``page`` (asked with ``limit``) was the chain's last:
    a page shorter than asked for ends the chain."""
    return None if len(page) < limit else int(page[-1]["seq"])


def read_chain(fetch: Callable[[ReceiptsQuery], Sequence[R]], chain: str, after: int = 0,
               page: int = PAGE_MAX) -> Iterator[R]:
    """Every receipt of ``chain`` with ``seq > after``, in seq order, fetched ``page`` at a time
    with ``fetch`` (which sends one ``receipts`` query and returns its answer) as they are read."""
    cursor: int | None = after
    while cursor is not None:
        found = fetch(receipts_query(chain, cursor, page))
        yield from found
        cursor = next_after(found, page)


async def aread_chain(fetch: Callable[[ReceiptsQuery], Awaitable[Sequence[R]]], chain: str, after: int = 0,
                      page: int = PAGE_MAX) -> AsyncIterator[R]:
    """:func:`read_chain` for a ``fetch`` that is awaited (the gateway's bridge)."""
    cursor: int | None = after
    while cursor is not None:
        found = await fetch(receipts_query(chain, cursor, page))
        for receipt in found:
            yield receipt
        cursor = next_after(found, page)
