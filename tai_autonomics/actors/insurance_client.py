"""InsuranceClient: Talks to the insurer's API behind retries, a circuit breaker and a cache.

Its place in the supervision tree exists now; its domain behaviour arrives with issue 4 (trust).
Until then it answers ``status`` so the tree can be started, inspected and supervised.
"""

from __future__ import annotations

from tai_autonomics.actors._base import DomainActor


class InsuranceClient(DomainActor):
    role = "Talks to the insurer's API behind retries, a circuit breaker and a cache."
