"""The registered name of every worker of the supervision tree, in one place.

Actors find one another by name (``call_actor(RECEIPT_LEDGER, ...)``), as OTP processes do by a
registered atom; a name spelled out as a string at each call site is a typo the tree only reports
as a call that times out. The packaged ``supervision.toml`` names the same workers
(tests/actors/test_names.py holds the two equal, and holds every other module of the package to
these constants).
"""

from __future__ import annotations

from typing import Final

RECEIPT_LEDGER: Final = "ReceiptLedger"
CERT_MANAGER: Final = "CertManager"
INSURANCE_CLIENT: Final = "InsuranceClient"
PROD_MODE: Final = "ProdMode"
NOTIFIER: Final = "Notifier"
PRICING: Final = "Pricing"
PUBLISHER: Final = "Publisher"
ACQUISITION: Final = "Acquisition"

#: every worker of the packaged tree, in its start order
WORKERS: Final = (RECEIPT_LEDGER, CERT_MANAGER, INSURANCE_CLIENT, PROD_MODE, NOTIFIER, PRICING, PUBLISHER,
                  ACQUISITION)
