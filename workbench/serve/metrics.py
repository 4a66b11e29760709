"""Prometheus text-format metrics for the server, kept in memory (no client library needed).

``ServeMetrics`` counts requests (by route and status), prompt and generated tokens, finished and
cancelled generations, and keeps histograms of time to first token and of the time between a
request's tokens (seconds). Queue depth and active sequences are read from the batchers when
``render`` is called. Thread-safe; values are raw numbers, formatted only in ``render``.
"""
from __future__ import annotations

import threading
from collections import defaultdict

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.count += 1
        self.sum += value


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class ServeMetrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.prompt_tokens: dict[str, int] = defaultdict(int)
        self.generated_tokens: dict[str, int] = defaultdict(int)
        self.finished_by: dict[tuple[str, str], int] = defaultdict(int)
        self.ttft: dict[str, Histogram] = {}
        self.token_latency: dict[str, Histogram] = {}

    def request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1

    def observe_ttft(self, model: str, seconds: float) -> None:
        with self._lock:
            self.ttft.setdefault(model, Histogram(TTFT_BUCKETS)).observe(seconds)

    def observe_token(self, model: str, seconds: float) -> None:
        with self._lock:
            self.token_latency.setdefault(model, Histogram(TOKEN_BUCKETS)).observe(seconds)

    def finished(self, model: str, reason: str, prompt_tokens: int, generated: int) -> None:
        with self._lock:
            self.finished_by[(model, reason)] += 1
            self.prompt_tokens[model] += prompt_tokens
            self.generated_tokens[model] += generated

    def render(self, batchers: dict | None = None) -> str:
        """The Prometheus text exposition; ``batchers`` maps model id -> ``Batcher`` for gauges."""
        out: list[str] = []

        def head(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            head("workbench_requests_total", "counter", "HTTP requests by method, route and status.")
            for (method, route, status), n in sorted(self.requests.items()):
                out.append(f"workbench_requests_total{_labels(method=method, route=route, status=status)} {n}")
            head("workbench_prompt_tokens_total", "counter", "Prompt tokens of finished generations.")
            for model, n in sorted(self.prompt_tokens.items()):
                out.append(f"workbench_prompt_tokens_total{_labels(model=model)} {n}")
            head("workbench_generated_tokens_total", "counter", "Tokens generated.")
            for model, n in sorted(self.generated_tokens.items()):
                out.append(f"workbench_generated_tokens_total{_labels(model=model)} {n}")
            head("workbench_generations_total", "counter", "Finished generations by finish reason.")
            for (model, reason), n in sorted(self.finished_by.items()):
                out.append(f"workbench_generations_total{_labels(model=model, reason=reason)} {n}")
            for name, hists, text in (
                ("workbench_time_to_first_token_seconds", self.ttft, "Request received to first token."),
                ("workbench_time_per_output_token_seconds", self.token_latency, "Time between a request's tokens."),
            ):
                head(name, "histogram", text)
                for model, h in sorted(hists.items()):
                    for b, c in zip(h.buckets, h.counts):
                        out.append(f"{name}_bucket{_labels(model=model, le=repr(b))} {c}")
                    out.append(f"{name}_bucket{_labels(model=model, le='+Inf')} {h.count}")
                    out.append(f"{name}_sum{_labels(model=model)} {h.sum}")
                    out.append(f"{name}_count{_labels(model=model)} {h.count}")
        head("workbench_queue_depth", "gauge", "Requests waiting to join a batch.")
        for model, b in sorted((batchers or {}).items()):
            out.append(f"workbench_queue_depth{_labels(model=model)} {b.queue_depth}")
        head("workbench_active_sequences", "gauge", "Requests decoding now.")
        for model, b in sorted((batchers or {}).items()):
            out.append(f"workbench_active_sequences{_labels(model=model)} {b.active_count}")
        return "\n".join(out) + "\n"
