"""The ReceiptLedger's calls as its callers make them, as an OTP module wraps ``gen_server:call``.

The ledger answers ``receipts`` a page at a time (``seq > after``, at most ``limit``; see
:mod:`tai_autonomics.actors.receipt_ledger`). Reading a whole chain is a loop over those pages that
the gateway, the notifier and the end-to-end tests each wrote for themselves; :func:`read_chain`
(and :func:`aread_chain` for async callers such as the gateway) is that loop, once. The caller
passes how one page is fetched (``node.call``, the gateway's bridge, the HTTP client), so this
module depends on no transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, TypedDict, TypeVar

#: the ledger's largest page (``Ledger.receipts`` takes 1..1000)
PAGE_MAX = 1000

R = TypeVar("R", bound=Mapping[str, Any])


class ReceiptsQuery(TypedDict):
    """The payload of the ledger's ``receipts`` call: the chain's receipts with ``seq > after``."""

    chain: str
    after: int
    limit: int


def receipts_query(chain: str, after: int = 0, limit: int = PAGE_MAX) -> ReceiptsQuery:
    """One page of ``chain`` after ``after``, at most ``limit`` receipts."""
    return {"chain": chain, "after": after, "limit": limit}


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
