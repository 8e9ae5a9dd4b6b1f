"""ReceiptLedger: The single sequencer of the receipt ledger: every receipt is appended through it.

Its place in the supervision tree exists now; its domain behaviour arrives with issue 3 (ledger).
Until then it answers ``status`` so the tree can be started, inspected and supervised.
"""

from __future__ import annotations

from tai_autonomics.actors._base import DomainActor


class ReceiptLedger(DomainActor):
    role = 'The single sequencer of the receipt ledger: every receipt is appended through it.'
