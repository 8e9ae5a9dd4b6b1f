"""Pricing: quotes work by measured value (docs/specification.md §6) and records each quote as a receipt.

The rules live in :mod:`tai_autonomics.operations.pricing`; this actor asks ProdMode whether
pricing may run and under which authority (contractual in ``prod``, advisory in ``eval``),
compares each quote with the customer's previous value for spike detection, and records
``pricing.quoted``. The previous contractual value is read on demand from the ledger's pricing
index (written with each receipt, so nothing is replayed at start) and kept in a bounded cache;
advisory values live in that cache only, as they never outlived the process.

Args: ``params`` (alpha, base, min_price, max_price, scale, scales: {metric: scale}), ``weights``
({customer: {metric: weight}}).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from tai_autonomics.actors import ledger_api, status_api
from tai_autonomics.actors.names import RECEIPT_LEDGER
from tai_autonomics.errors import TaiError
from tai_autonomics.operations.pricing import PricingParams, quote, validate_metrics
from tai_autonomics.runtime import NOREPLY, Caller, Server

CACHED_CUSTOMERS = 10_000  # previous values kept in memory; others are read from the ledger again


class Pricing(Server):
    def init(self, args: dict[str, Any]) -> Any:
        self.params = dict(args.get("params", {}))
        PricingParams(**self.params)  # a bad parameter (say a scale of 0) fails the start, not every quote
        self.weights: dict[str, dict[str, float]] = dict(args.get("weights", {}))
        self.previous: OrderedDict[tuple[str | None, str], str | None] = OrderedDict()  # (chain, customer)

    def call_quote(self, request: Any) -> Any:
        """``{customer_id, metrics}`` → ``{"quote": payload, "receipt": receipt}``."""
        if not isinstance(request, dict):
            request = {}
        customer, metrics = request.get("customer_id"), request.get("metrics")
        validate_metrics(customer, metrics)  # refuse bad input before anything is asked or recorded
        caller = self.caller
        status_api.guard(self, "pricing",
                         then=lambda authority, error: self._authorised(caller, customer, metrics, authority, error))
        return NOREPLY

    def _authorised(self, caller: Caller, customer: str, metrics: dict, authority: Any,
                    error: TaiError | None) -> None:
        if error is not None:
            self.reply(caller, error=error)
            return
        chain = authority["chain"] if authority["authority"] == "contractual" else None
        if chain is None or (chain, customer) in self.previous:
            self._quote(caller, customer, metrics, authority, chain)
            return

        def found(answer: Any, failure: TaiError | None) -> None:
            if failure is not None:
                self.reply(caller, error=failure)
                return
            if (chain, customer) not in self.previous:  # else a quote answered meanwhile is newer
                self._remember(chain, customer, answer["value"])
            self._quote(caller, customer, metrics, authority, chain)

        self.call_actor(RECEIPT_LEDGER, "price", {"chain": chain, "customer_id": customer}, then=found)

    def _quote(self, caller: Caller, customer: str, metrics: dict, authority: Any, chain: str | None) -> None:
        params = PricingParams(**self.params, weights=self.weights.get(customer, {}))
        result = quote(customer, metrics, params, self.previous.get((chain, customer)))
        self._remember(chain, customer, result.value)
        draft: ledger_api.Draft = {
            "kind": "pricing.quoted", "mode": "prod" if authority["authority"] == "contractual" else "eval",
            "chain": authority["chain"], "payload": result.to_payload()}
        ledger_api.append(self, draft, then=lambda receipt, err: self.reply(
            caller, {"quote": result.to_payload(), "receipt": receipt}, err))

    def _remember(self, chain: str | None, customer: str, value: str | None) -> None:
        self.previous[(chain, customer)] = value
        self.previous.move_to_end((chain, customer))
        while len(self.previous) > CACHED_CUSTOMERS:
            self.previous.popitem(last=False)

    def inspect_state(self) -> dict[str, Any]:
        return {"customers": len(self.previous)}
