"""Signed webhook notifications (docs/specification.md §12): what becomes a notice, how it is
signed, and how a receiver checks it. The Notifier actor (``actors/notifier.py``) delivers them."""

from tai_autonomics.notifications.rules import Notice, Throttle, Watch
from tai_autonomics.notifications.signing import HEADER, SignatureError, sign, verify_signature

__all__ = ["HEADER", "Notice", "SignatureError", "Throttle", "Watch", "sign", "verify_signature"]
