"""``/metrics`` is Prometheus text that Prometheus' own parser reads, with the metric names the
server has always had, counted per server (two servers in one process do not share counts)."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from workbench.serve.metrics import ServeMetrics


class FakeBatcher:
    def __init__(self, waiting: int, active: int):
        self.queue_depth, self.active_count = waiting, active


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` as Prometheus' parser reads ``text``."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_exposition_parses_with_every_metric_and_its_values():
    m = ServeMetrics()
    m.request("POST", "/api/generate", 200)
    m.request("POST", "/api/generate", 200)
    m.request("GET", "/v1/models", 401)
    m.finished("tiny", "length", prompt_tokens=5, generated=7)
    m.finished("tiny", "cancelled", prompt_tokens=2, generated=1)
    m.observe_ttft("tiny", 0.03)
    m.observe_token("tiny", 0.2)
    got = samples(m.render({"tiny": FakeBatcher(waiting=3, active=2)}))
    assert got[("workbench_requests_total", (("method", "POST"), ("route", "/api/generate"), ("status", "200")))] == 2
    assert got[("workbench_requests_total", (("method", "GET"), ("route", "/v1/models"), ("status", "401")))] == 1
    assert got[("workbench_prompt_tokens_total", (("model", "tiny"),))] == 7
    assert got[("workbench_generated_tokens_total", (("model", "tiny"),))] == 8
    assert got[("workbench_generations_total", (("model", "tiny"), ("reason", "cancelled")))] == 1
    assert got[("workbench_time_to_first_token_seconds_bucket", (("le", "0.025"), ("model", "tiny")))] == 0
    assert got[("workbench_time_to_first_token_seconds_bucket", (("le", "0.05"), ("model", "tiny")))] == 1
    assert got[("workbench_time_to_first_token_seconds_count", (("model", "tiny"),))] == 1
    assert got[("workbench_time_per_output_token_seconds_sum", (("model", "tiny"),))] == 0.2
    assert got[("workbench_queue_depth", (("model", "tiny"),))] == 3
    assert got[("workbench_active_sequences", (("model", "tiny"),))] == 2


def test_two_servers_in_one_process_count_apart_and_gauges_follow_the_batchers():
    a, b = ServeMetrics(), ServeMetrics()
    a.request("GET", "/health", 200)
    assert ("workbench_requests_total", (("method", "GET"), ("route", "/health"), ("status", "200"))) \
        not in samples(b.render())
    first = samples(a.render({"m": FakeBatcher(1, 1)}))
    assert first[("workbench_queue_depth", (("model", "m"),))] == 1
    assert ("workbench_queue_depth", (("model", "m"),)) not in samples(a.render({}))  # model gone


def test_the_metrics_live_in_a_prometheus_client_registry_its_own_tools_can_use():
    """``ServeMetrics.registry`` works with prometheus_client's exposition (push, mount, WSGI)."""
    from prometheus_client import CollectorRegistry, generate_latest

    m = ServeMetrics()
    m.finished("tiny", "stop", prompt_tokens=1, generated=2)
    assert isinstance(m.registry, CollectorRegistry)
    got = samples(generate_latest(m.registry).decode())
    assert got[("workbench_generations_total", (("model", "tiny"), ("reason", "stop")))] == 1
