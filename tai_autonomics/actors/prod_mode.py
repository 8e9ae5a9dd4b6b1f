"""ProdMode: Decides and guards the mode (eval, prod, read_only, draining).

Its place in the supervision tree exists now; its domain behaviour arrives with issue 5 (operations).
Until then it answers ``status`` so the tree can be started, inspected and supervised.
"""

from __future__ import annotations

from tai_autonomics.actors._base import DomainActor


class ProdMode(DomainActor):
    role = 'Decides and guards the mode (eval, prod, read_only, draining).'
