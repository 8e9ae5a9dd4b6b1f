"""A generic OTP-style runtime on thespian: supervisors, the server behaviour, a name registry
and supervision trees loaded from TOML. It knows nothing of the product built on it."""

from tai_autonomics.runtime._process import set_log_level
from tai_autonomics.runtime.errors import (
    ActorCrashed,
    ActorRestarting,
    CallError,
    CallTimeout,
    NoSuchActor,
    StartError,
    SupervisorBusy,
    UnknownMessage,
)
from tai_autonomics.runtime.intensity import RestartIntensity
from tai_autonomics.runtime.node import BASES, DEFAULT_CALL_TIMEOUT, Node, NodeConfig
from tai_autonomics.runtime.server import DEFERRED, NOREPLY, Caller, Server
from tai_autonomics.runtime.spec import (
    SupervisorSpec,
    WorkerSpec,
    load_tree,
    parse_tree,
    render_tree,
    with_worker_args,
)
from tai_autonomics.runtime.supervisor import Supervisor

__all__ = [
    "DEFERRED", "NOREPLY", "ActorCrashed", "ActorRestarting", "BASES", "Caller", "CallError", "CallTimeout",
    "DEFAULT_CALL_TIMEOUT",
    "NoSuchActor", "Node", "NodeConfig", "RestartIntensity", "Server", "StartError", "Supervisor",
    "SupervisorBusy", "SupervisorSpec", "UnknownMessage", "WorkerSpec", "load_tree", "parse_tree", "render_tree",
    "set_log_level",
    "with_worker_args",
]
