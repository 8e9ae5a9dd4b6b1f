"""The product's operations as pure, deterministic logic (the actors in ``actors/`` run them).

Keeping the rules free of actors and I/O lets a customer or an auditor recompute a result from
its receipt, and lets property tests cover them exhaustively.
"""

from tai_autonomics.operations.pricing import PricingParams, Quote, quote, validate_metrics

__all__ = ["PricingParams", "Quote", "quote", "validate_metrics"]
