"""Indexes the ledger keeps beside its receipts, so that no actor replays a chain at start.

Each index is a function of the receipts alone, applied to each batch in its append's
transaction (the same one rule for the write and for ``ledger verify``'s recount), and read on
demand by the actor that needs it. Today's: each customer's last contractual pricing value,
which Pricing compares the next quote with for spike detection (docs/specification.md §6).
The coverage counters and operation records are the other state kept this way
(:mod:`~tai_autonomics.ledger.operations`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

PRICING_QUOTED = "pricing.quoted"


class PriceKey(NamedTuple):
    """A customer on a policy chain."""

    chain: str
    customer: str


def price_of(kind: str, chain: str | None, authority: str, payload: Mapping[str, Any]) -> tuple[PriceKey, str] | None:
    """The customer's value a receipt records, or None: a contractual ``pricing.quoted`` whose
    payload names the customer and the value as strings (what Pricing writes)."""
    if kind != PRICING_QUOTED or authority != "contractual" or not chain:
        return None
    customer, value = payload.get("customer_id"), payload.get("value")
    if not isinstance(customer, str) or not isinstance(value, str):
        return None
    return PriceKey(chain, customer), value


def prices_of(receipts: Iterable[Mapping[str, Any]]) -> dict[PriceKey, str]:
    """The last value per customer that the receipts (in leaf order) give: how a ledger older than
    the index gets it."""
    prices: dict[PriceKey, str] = {}
    for receipt in receipts:
        payload = receipt.get("payload")
        if isinstance(payload, Mapping):
            found = price_of(str(receipt.get("kind", "")), receipt.get("chain"), str(receipt.get("authority", "")),
                             payload)
            if found is not None:
                prices[found[0]] = found[1]
    return prices
