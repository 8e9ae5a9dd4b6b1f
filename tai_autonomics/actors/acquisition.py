"""Acquisition: Deploys software into customers' clouds.

Its place in the supervision tree exists now; its domain behaviour arrives with issue 5 (operations).
Until then it answers ``status`` so the tree can be started, inspected and supervised.
"""

from __future__ import annotations

from tai_autonomics.actors._base import DomainActor


class Acquisition(DomainActor):
    role = "Deploys software into customers' clouds."
