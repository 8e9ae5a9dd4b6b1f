"""TAI Autonomics: insured production operations on an OTP-style supervision tree of actors."""

from tai_autonomics.errors import ConfigError, TaiError

__all__ = ["ConfigError", "TaiError", "__version__"]
__version__ = "0.1.0"
