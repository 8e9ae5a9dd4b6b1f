"""The product's operations as pure, deterministic logic (the actors in ``actors/`` run them).

Keeping the rules free of actors and I/O lets a customer or an auditor recompute a result from
its receipt, and lets property tests cover them exhaustively.
"""

from tai_autonomics.operations.coverage import SkuNotAuthorized, limit_for, period_of
from tai_autonomics.operations.mode import (
    InsuranceNotVerified,
    ModeMachine,
    ModeNotReadOnly,
    ModeRefusal,
    Transition,
)
from tai_autonomics.operations.pricing import PricingError, PricingParams, Quote, quote, validate_metrics

__all__ = [
    "InsuranceNotVerified", "ModeMachine", "ModeNotReadOnly", "ModeRefusal", "PricingError", "PricingParams",
    "Quote", "SkuNotAuthorized",
    "Transition", "limit_for", "period_of", "quote", "validate_metrics",
]
