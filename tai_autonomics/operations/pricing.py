"""Value-based pricing (docs/specification.md §6): ``P = clamp(alpha * V + base, min_price, max_price)``.

``V`` is the weighted sum of logistic-scaled metrics, ``s(v) = 2 / (1 + exp(-v / scale)) - 1``,
which maps 0 to 0 and saturates towards 1, so no single metric can run away with the price.
``scale`` is where a metric has reached 46 % of its worth (``s(scale) = 0.46``, ``s(3 scale) = 0.91``):
it is per metric (``scales``), else :data:`DEFAULT_SCALE`. A scale of 1 (the first default) made
every metric above about 5 worth the same (100 requests/s and 50 ms both gave ``s = 1``, ``V =
2.0``); 100 puts the range where metrics such as requests per second, milliseconds or seats
usually are in the steep part of the curve (worked examples: docs/operations.md, "Pricing").
Everything that determines the result (metrics, weights, parameters) is returned with it and
recorded in the ``pricing.quoted`` receipt, and ``V`` and ``P`` are rounded to fixed decimals, so
the same inputs always give the same payload and anyone can recompute it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from tai_autonomics.errors import InvalidRequest
from tai_autonomics.validation import is_number

MAX_METRICS = 100
MAX_METRIC_VALUE = 1e9
SPIKE_FACTOR = 5
DEFAULT_SCALE = 100.0
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CUSTOMER = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
_VALUE_PLACES = Decimal("0.000001")
_CENTS = Decimal("0.01")


class PricingError(InvalidRequest):
    """The metrics cannot be priced as given; ``detail`` names the field and why."""

    code = "invalid_metrics"


@dataclass(frozen=True)
class PricingParams:
    alpha: float = 100.0
    base: float = 10.0
    min_price: float = 1.0
    max_price: float = 10_000.0
    scale: float = DEFAULT_SCALE
    weights: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, scale in {"scale": self.scale, **{f"scales.{k}": v for k, v in self.scales.items()}}.items():
            if not is_number(scale) or not scale > 0:
                raise ValueError(f"pricing {name} must be a number > 0, not {scale!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "base": self.base, "min_price": self.min_price,
                "max_price": self.max_price, "scale": self.scale}


@dataclass(frozen=True)
class Quote:
    customer_id: str
    metrics: dict[str, float]
    weights: dict[str, float]
    scales: dict[str, float]
    params: dict[str, Any]
    value: str
    price: str
    previous_value: str | None
    spike: bool

    def to_payload(self) -> dict[str, Any]:
        """The ``pricing.quoted`` receipt payload (all a customer needs to recompute it)."""
        return {"customer_id": self.customer_id, "metrics": self.metrics, "weights": self.weights,
                "scales": self.scales, "params": self.params, "value": self.value, "price": self.price,
                "currency": "USD", "previous_value": self.previous_value, "spike": self.spike}


def validate_metrics(customer_id: Any, metrics: Any) -> dict[str, float]:
    """The metrics as a plain dict, or an :class:`~tai_autonomics.errors.InvalidRequest` (a
    :class:`PricingError` for the metrics) naming the first bad field."""
    if not isinstance(customer_id, str) or not _CUSTOMER.match(customer_id):
        raise InvalidRequest("customer_id must be 1-128 of A-Z a-z 0-9 _ . : @ -",
                             detail={"field": "customer_id"})
    if not isinstance(metrics, dict) or not metrics:
        raise PricingError("metrics must be a non-empty JSON object of name → number", detail={"field": "metrics"})
    if len(metrics) > MAX_METRICS:
        raise PricingError(f"at most {MAX_METRICS} metrics, got {len(metrics)}", detail={"field": "metrics"})
    clean: dict[str, float] = {}
    for name, value in metrics.items():
        where = {"field": f"metrics.{name}"}
        if not isinstance(name, str) or not _NAME.match(name):
            raise PricingError(f"metric name {name!r} must be 1-64 of A-Z a-z 0-9 _ . -", detail=where)
        if not is_number(value):
            raise PricingError(f"metric {name!r} must be a finite number", detail=where)
        if not 0 <= value <= MAX_METRIC_VALUE:
            raise PricingError(f"metric {name!r} must be between 0 and {MAX_METRIC_VALUE:g}, got {value}",
                               detail=where)
        clean[name] = value
    return clean


def quote(customer_id: Any, metrics: Any, params: PricingParams, previous_value: str | None = None) -> Quote:
    """Price ``metrics`` for ``customer_id``; ``previous_value`` is the customer's last ``V``."""
    clean = validate_metrics(customer_id, metrics)
    weights = {name: params.weights.get(name, 1.0) for name in sorted(clean)}
    scales = {name: params.scales.get(name, params.scale) for name in weights}
    raw = sum(weights[name] * (2.0 / (1.0 + math.exp(-clean[name] / scales[name])) - 1.0) for name in weights)
    value = Decimal(repr(raw)).quantize(_VALUE_PLACES, ROUND_HALF_EVEN)
    unclamped = Decimal(repr(params.alpha)) * value + Decimal(repr(params.base))
    price = min(max(unclamped, Decimal(repr(params.min_price))), Decimal(repr(params.max_price)))
    previous = Decimal(previous_value) if previous_value is not None else None
    spike = previous is not None and previous > 0 and value > SPIKE_FACTOR * previous
    return Quote(customer_id=customer_id, metrics=dict(sorted(clean.items())), weights=weights, scales=scales,
                 params=params.to_dict(), value=str(value), price=str(price.quantize(_CENTS, ROUND_HALF_EVEN)),
                 previous_value=previous_value, spike=spike)
