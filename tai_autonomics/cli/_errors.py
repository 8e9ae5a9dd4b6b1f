"""The command line's own refusals (before any daemon or ledger is involved): each its class
and code, printed as ``tai-autonomics: error: [code] message``."""

from __future__ import annotations

from tai_autonomics.errors import TaiError


class ArgumentsInvalid(TaiError):
    """The options given do not make a command (argparse cannot say so alone)."""

    code = "invalid_arguments"


class FileUnreadable(TaiError):
    """A file named on the command line cannot be read."""

    code = "file_unreadable"


class AlreadyRunning(TaiError):
    """Another daemon holds the data directory's pid lock."""

    code = "already_running"


class TokenMissing(TaiError):
    """A command that talks to the gateway has no bearer token to send."""

    code = "token_missing"


class ChainAmbiguous(TaiError):
    """The export holds contract receipts on several chains; ``detail["chains"]`` lists them."""

    code = "chain_ambiguous"
