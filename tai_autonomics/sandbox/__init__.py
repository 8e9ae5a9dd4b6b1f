"""The sandbox: a real HTTP server playing the outside parties (insurer, marketplace, customer deploy
endpoint) with a development CA and fault injection, for development, tests and load tests.

Run it with ``tai-autonomics sandbox serve``, in a test thread with :class:`SandboxServer`, or as a
child process with :class:`SandboxProcess`. The HTTP contracts are the OpenAPI documents in
``openapi/`` beside this file.
"""

from tai_autonomics.sandbox.app import RequestLog, Sandbox, SandboxConfig
from tai_autonomics.sandbox.faults import Fault, FaultConfigError, FaultInjector, parse_fault_arg
from tai_autonomics.sandbox.runner import SandboxProcess, SandboxServer, SandboxStartError, serve_foreground

__all__ = [
    "Fault", "FaultConfigError", "FaultInjector", "RequestLog", "Sandbox", "SandboxConfig", "SandboxProcess",
    "SandboxServer", "SandboxStartError", "parse_fault_arg", "serve_foreground",
]
