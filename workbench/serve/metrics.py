"""The server's Prometheus metrics, through ``prometheus_client`` on a registry of its own.

``ServeMetrics`` counts requests (by method, route and status), prompt and generated tokens,
finished generations by finish reason, and keeps histograms of time to first token and of the
time between a request's tokens (seconds). Queue depth and active sequences are gauges read from
the batchers at each scrape (``render(batchers)``). Every ``ServeMetrics`` has its own
``CollectorRegistry``, so two servers in one process (tests, notebooks) never share counts.
Thread-safe (``prometheus_client`` is).

Metric names: ``workbench_requests_total``, ``workbench_prompt_tokens_total``,
``workbench_generated_tokens_total``, ``workbench_generations_total``,
``workbench_time_to_first_token_seconds``, ``workbench_time_per_output_token_seconds``,
``workbench_queue_depth``, ``workbench_active_sequences``.
"""
from __future__ import annotations

import threading

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = CONTENT_TYPE_LATEST
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0)


class _BatcherGauges:
    """A collector that reads queue depth and active rows from the batchers being scraped."""

    def __init__(self):
        self.batchers: dict = {}

    def collect(self):
        depth = GaugeMetricFamily("workbench_queue_depth", "Requests waiting to join a batch.", labels=["model"])
        active = GaugeMetricFamily("workbench_active_sequences", "Requests decoding now.", labels=["model"])
        for model, b in sorted(self.batchers.items()):
            depth.add_metric([model], b.queue_depth)
            active.add_metric([model], b.active_count)
        yield depth
        yield active


class ServeMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("workbench_requests", "HTTP requests by method, route and status.",
                                ["method", "route", "status"], registry=r)
        self.prompt_tokens = Counter("workbench_prompt_tokens", "Prompt tokens of finished generations.",
                                     ["model"], registry=r)
        self.generated_tokens = Counter("workbench_generated_tokens", "Tokens generated.", ["model"], registry=r)
        self.finished_by = Counter("workbench_generations", "Finished generations by finish reason.",
                                   ["model", "reason"], registry=r)
        self.ttft = Histogram("workbench_time_to_first_token_seconds", "Request received to first token.",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.token_latency = Histogram("workbench_time_per_output_token_seconds",
                                       "Time between a request's tokens.", ["model"], buckets=TOKEN_BUCKETS,
                                       registry=r)
        self._gauges = _BatcherGauges()
        r.register(self._gauges)
        self._scrape = threading.Lock()  # the gauges' batchers are set per scrape

    def request(self, method: str, route: str, status: int) -> None:
        self.requests.labels(method, route, str(status)).inc()

    def observe_ttft(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def observe_token(self, model: str, seconds: float) -> None:
        self.token_latency.labels(model).observe(seconds)

    def finished(self, model: str, reason: str, prompt_tokens: int, generated: int) -> None:
        self.finished_by.labels(model, reason).inc()
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.generated_tokens.labels(model).inc(generated)

    def render(self, batchers: dict | None = None) -> str:
        """The Prometheus text exposition (``CONTENT_TYPE``); ``batchers`` maps model id ->
        ``Batcher`` for the gauges."""
        with self._scrape:
            self._gauges.batchers = dict(batchers or {})
            try:
                return generate_latest(self.registry).decode("utf-8")
            finally:
                self._gauges.batchers = {}
