"""``/metrics``: the gateway's own counters and histograms, and what the runtime can tell.

Each app has its own registry (two gateways in one test process never share counters). Actor
restart counts and process numbers (``tai_actor_*``) are read from the live tree at scrape time
(the supervisors keep the restarts, each actor answers ``$stats``), so the numbers are the
tree's, not a copy that could drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from tai_autonomics.gateway import supervision

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
OPERATION_BUCKETS = (*LATENCY_BUCKETS, 20.0, 30.0, 40.0)
"""An operation waits on an outside party up to 40 s (the actors' CALL_TIMEOUT_S); 30 s is the
deploy latency alert's threshold, so it is a bound and a p95 above it is seen as such."""


class GatewayMetrics:
    def __init__(self, in_flight: Any) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter("tai_gateway_requests", "HTTP requests answered, by route, method and status",
                                 ["route", "method", "status"], registry=self.registry)
        self._latency = Histogram("tai_gateway_request_duration_seconds",
                                  "Time to answer an HTTP request, by route, method and status",
                                  ["route", "method", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        Gauge("tai_gateway_actor_calls_in_flight", "Actor calls the gateway is waiting on",
              registry=self.registry).set_function(in_flight)
        self._tree = _TreeCollector()
        self.registry.register(self._tree)
        self._operations = Counter("tai_operations", "Insured operations by kind and outcome "
                                   "(completed, failed, refused before anything went out, or replayed: the "
                                   "answer of an operation finished before the request)",
                                   ["operation", "outcome"], registry=self.registry)
        self._operation_latency = Histogram("tai_operation_duration_seconds", "Time to run an operation, by kind",
                                            ["operation"], buckets=OPERATION_BUCKETS, registry=self.registry)
        self._refusals = Counter("tai_refusals", "Operations refused, by the refusal's code "
                                 "(coverage_limit_exceeded, mode_refused, ...)", ["code"], registry=self.registry)
        self._domain = _DomainCollector()
        self.registry.register(self._domain)
        self._shell_commands = Counter("tai_shell_commands", "Remote shell commands, by command and outcome (ok, "
                                       "or the refusal's code; command 'unparsed' for a line that is not one)",
                                       ["command", "outcome"], registry=self.registry)
        self.shell_sessions = Gauge("tai_shell_sessions", "Remote shell sessions open now", registry=self.registry)

    def shell_command(self, command: str, outcome: str) -> None:
        self._shell_commands.labels(command, outcome).inc()

    def operation(self, operation: str, outcome: str, seconds: float, code: str = "") -> None:
        self._operations.labels(operation, outcome).inc()
        self._operation_latency.labels(operation).observe(seconds)
        if code:
            self._refusals.labels(code).inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self._requests.labels(*labels).inc()
        self._latency.labels(*labels).observe(seconds)

    def render(self, tree: dict[str, Any] | None, domain: dict[str, Any] | None = None) -> bytes:
        """The text exposition, with the tree just walked (None: it could not be walked) and what
        the domain actors answered this scrape (mode, ledger, insurer, certificate)."""
        self._tree.tree = tree
        self._domain.state = domain or {}
        return generate_latest(self.registry)


class _TreeCollector:
    """Per-actor restarts, running state and process numbers from the observed tree
    (:mod:`.observer`): restarts as the supervisors count them, the rest as each actor's
    ``$stats`` answered this scrape (an actor that did not answer has ``tai_actor_stats_ok`` 0
    and no other ``tai_actor_*`` sample of its own)."""

    def __init__(self) -> None:
        self.tree: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        ok = GaugeMetricFamily("tai_supervision_walk_ok", "1 if the supervision tree answered this scrape")
        ok.add_metric([], 0 if self.tree is None else 1)
        yield ok
        if self.tree is None:
            return
        restarts = CounterMetricFamily("tai_actor_restarts", "Restarts of an actor by its supervisor "
                                       "(since that supervisor started)", labels=["actor", "supervisor"])
        running = GaugeMetricFamily("tai_actor_running", "1 if the actor is running", labels=["actor", "supervisor"])
        for supervisor, child in supervision.edges(self.tree):
            restarts.add_metric([child["name"], supervisor], child.get("restarts", 0))
            running.add_metric([child["name"], supervisor], 1 if child.get("state") == "running" else 0)
        yield restarts
        yield running
        yield from _actor_stats(supervision.nodes(self.tree))


def _actor_stats(nodes: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    """The ``$stats`` of each actor (the root's included), labelled by actor; counters restart
    at zero with a new incarnation's process, as Prometheus expects of a process's counters."""
    answered = GaugeMetricFamily("tai_actor_stats_ok", "1 if the actor answered $stats this scrape",
                                 labels=["actor"])
    families = {key: family(name, text, labels=["actor"]) for key, family, name, text in (
        ("rss_bytes", GaugeMetricFamily, "tai_actor_rss_bytes", "Resident memory of the actor's process"),
        ("cpu_seconds", CounterMetricFamily, "tai_actor_cpu_seconds",
         "CPU time (user + system) of the actor's process"),
        ("messages", CounterMetricFamily, "tai_actor_messages",
         "Messages the actor has handled (calls, casts, replies; not timers)"),
        ("pending_outbound", GaugeMetricFamily, "tai_actor_pending_outbound",
         "Messages the actor has sent that are not yet delivered (unacknowledged on TCP, not yet taken "
         "by the kernel on Unix sockets) or that it holds for coalescing"))}
    for node in nodes:
        stats = node.get("stats")
        answered.add_metric([node["name"]], 0 if stats is None else 1)
        for key, family in families.items():
            if stats is not None and stats.get(key) is not None:
                family.add_metric([node["name"]], stats[key])
    yield answered
    yield from families.values()


class _DomainCollector:
    """Mode, receipts, insurance and certificate state as the actors report them at scrape time.

    What happens in an actor's process (insurer requests, cache lookups) is counted there and
    reported in its ``status``; a counter restarts at zero with its actor, as Prometheus expects of
    a process's counters.
    """

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        mode = self.state.get("mode")
        if mode is not None:
            gauge = GaugeMetricFamily("tai_mode", "1 for the current mode", labels=["mode"])
            for name in ("eval", "prod", "read_only", "draining"):
                gauge.add_metric([name], 1 if mode.get("mode") == name else 0)
            yield gauge
        ledger = self.state.get("ledger")
        if ledger is not None:
            yield GaugeMetricFamily("tai_receipts", "Receipts in the ledger (its tree size)",
                                    value=ledger.get("size", 0))
            yield CounterMetricFamily("tai_ledger_batches", "Group-commit batches since the ledger actor started",
                                      value=ledger.get("batches", 0))
        insurer = self.state.get("insurer")
        if insurer is not None:
            cache = insurer.get("cache") or {}
            yield GaugeMetricFamily("tai_insurance_verified", "1 if the insurer's last policy status is fresh",
                                    value=1 if cache.get("fresh") else 0)
            breaker = GaugeMetricFamily("tai_insurer_breaker", "1 for the breaker's current state", labels=["state"])
            for name in ("closed", "open", "half-open"):
                breaker.add_metric([name], 1 if insurer.get("breaker_state") == name else 0)
            yield breaker
            yield from _insurer_traffic(insurer)
        certificate = self.state.get("certificate")
        if certificate is not None and certificate.get("loaded"):
            yield GaugeMetricFamily("tai_certificate_days_left", "Whole days until the insurance certificate "
                                    "expires, rounded down: negative once it has expired",
                                    value=certificate["days_left"])


def _insurer_traffic(insurer: dict[str, Any]) -> Iterator[Metric]:
    """The InsuranceClient's own counts (absent while it is not configured)."""
    lookups = insurer.get("cache_lookups")
    if lookups is not None:
        family = CounterMetricFamily("tai_insurer_cache_lookups", "Policy-status cache asked for an answer "
                                     "(the insurer unavailable, or a cache-only read), by result: hit or miss",
                                     labels=["result"])
        for result in ("hit", "miss"):
            family.add_metric([result], lookups.get(result, 0))
        yield family
    timed = insurer.get("request_seconds")
    if timed is not None:
        buckets = [(floatToGoString(bound), count) for bound, count in timed["buckets"]]
        yield HistogramMetricFamily("tai_insurer_request_duration_seconds", "Time of each HTTP attempt to the "
                                    "insurer, failed ones included", buckets=[*buckets, ("+Inf", timed["count"])],
                                    sum_value=timed["sum"])
