"""How fast a backend runs and whether it computes what torch computes.

- ``stats``: ``Latency``, raw durations and their percentiles.
- ``environment``: the machine a measurement ran on.
- ``parity``: logits and greedy tokens of a backend against torch eager, judged against the
  variation of fp32 itself.
- ``results``: ``BenchConfig``, ``BackendResult``, ``BenchResult`` (numbers, JSON, tables).
- ``harness``: ``run_benchmark``, the timing method.
- ``speeds``: tokens/s kept in the store for the Store page (reading needs no torch).
"""
