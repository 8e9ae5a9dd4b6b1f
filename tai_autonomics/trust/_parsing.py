"""Private: every exception ``cryptography`` raises for a corrupt certificate, in one place.

Certificates are parsed lazily (names, extensions, keys are decoded on first access), so these
can surface long after loading; each catch site uses this tuple so no corrupt input escapes our
typed errors.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)
