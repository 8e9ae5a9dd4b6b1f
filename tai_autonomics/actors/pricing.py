"""Pricing: quotes work by measured value (docs/specification.md §6) and records each quote as a receipt.

The rules live in :mod:`tai_autonomics.operations.pricing`; this actor asks ProdMode whether
pricing may run and under which authority (contractual in ``prod``, advisory in ``eval``),
remembers each customer's previous value for spike detection (rebuilt from the ledger's
``pricing.quoted`` receipts at start), and records ``pricing.quoted``.

Args: ``params`` (alpha, base, min_price, max_price, scale, scales: {metric: scale}), ``weights``
({customer: {metric: weight}}).
"""

from __future__ import annotations

from typing import Any

from tai_autonomics.operations.pricing import PricingParams, quote, validate_metrics
from tai_autonomics.runtime import DEFERRED, NOREPLY, Caller, Server

PAGE = 1000


class Pricing(Server):
    def init(self, args: dict[str, Any]) -> Any:
        self.params = dict(args.get("params", {}))
        PricingParams(**self.params)  # a bad parameter (say a scale of 0) fails the start, not every quote
        self.weights: dict[str, dict[str, float]] = dict(args.get("weights", {}))
        self.previous: dict[str, str] = {}
        self.call_actor("ProdMode", "guard", {"operation": "pricing"}, then=self._started_authority)
        return DEFERRED

    def _started_authority(self, authority: Any, error: BaseException | None) -> None:
        if error is not None or authority["chain"] is None:
            self.confirm_started()  # eval (or not pricing now): no contractual history to rebuild
            return
        self._load(authority["chain"], after=0)

    def _load(self, chain: str, after: int) -> None:
        self.call_actor("ReceiptLedger", "receipts", {"chain": chain, "after": after, "limit": PAGE},
                        then=lambda receipts, error: self._page(chain, receipts, error))

    def _page(self, chain: str, receipts: Any, error: BaseException | None) -> None:
        if error is not None:
            self.fail_start(f"cannot rebuild pricing history from the ledger: {getattr(error, 'message', error)}")
            return
        for receipt in receipts:
            if receipt.get("kind") == "pricing.quoted":
                self.previous[receipt["payload"]["customer_id"]] = receipt["payload"]["value"]
        if len(receipts) == PAGE:
            self._load(chain, receipts[-1]["seq"])
        else:
            self.confirm_started()

    def call_quote(self, request: Any) -> Any:
        """``{customer_id, metrics}`` → ``{"quote": payload, "receipt": receipt}``."""
        if not isinstance(request, dict):
            request = {}
        customer, metrics = request.get("customer_id"), request.get("metrics")
        validate_metrics(customer, metrics)  # refuse bad input before anything is asked or recorded
        caller = self.caller
        self.call_actor("ProdMode", "guard", {"operation": "pricing"},
                        then=lambda authority, error: self._authorised(caller, customer, metrics, authority, error))
        return NOREPLY

    def _authorised(self, caller: Caller, customer: str, metrics: dict, authority: Any,
                    error: BaseException | None) -> None:
        if error is not None:
            self.reply(caller, error=error)
            return
        params = PricingParams(**self.params, weights=self.weights.get(customer, {}))
        result = quote(customer, metrics, params, self.previous.get(customer))
        self.previous[customer] = result.value
        draft = {"kind": "pricing.quoted", "mode": "prod" if authority["authority"] == "contractual" else "eval",
                 "chain": authority["chain"], "payload": result.to_payload()}
        self.call_actor("ReceiptLedger", "append", draft,
                        then=lambda receipt, err: self.reply(caller, {"quote": result.to_payload(), "receipt": receipt},
                                                             err))

    def inspect_state(self) -> dict[str, Any]:
        return {"customers": len(self.previous)}
