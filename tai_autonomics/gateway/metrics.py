"""``/metrics``: the gateway's own counters and histograms, and what the runtime can tell.

Each app has its own registry (two gateways in one test process never share counters). Actor
restart counts are read from the live tree at scrape time — the supervisors keep them — so the
numbers are the tree's, not a copy that could drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


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

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self._requests.labels(*labels).inc()
        self._latency.labels(*labels).observe(seconds)

    def render(self, tree: dict[str, Any] | None) -> bytes:
        """The text exposition, with the tree just walked (None: it could not be walked)."""
        self._tree.tree = tree
        return generate_latest(self.registry)


class _TreeCollector:
    """Per-actor restarts and running state from a walk of the tree (see :mod:`.supervision`)."""

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
        for supervisor, child in _children(self.tree):
            restarts.add_metric([child["name"], supervisor], child.get("restarts", 0))
            running.add_metric([child["name"], supervisor], 1 if child.get("state") == "running" else 0)
        yield restarts
        yield running


def _children(node: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    for child in node.get("children", ()):
        yield node["name"], child
        yield from _children(child)
