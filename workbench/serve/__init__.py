"""Serve store models over HTTP: the origin's ``/api/generate`` and an OpenAI-compatible API.

Modules, one concern each:

- ``keys``: API keys, stored hashed under the store root.
- ``engine``: one forward pass for every active sequence of one model (the batched KV cache).
- ``sampling``: choosing a token from a row of logits; logprobs from the model's distribution.
- ``batching``: the continuous batcher (bounded queue, sequences join and leave between steps).
- ``registry``: which models are served, loaded lazily, and what happens when one is removed.
- ``schemas``: request bodies and the limits on them.
- ``metrics``: Prometheus metrics through prometheus_client.
- ``openai_api`` / ``generate_api``: the HTTP routes; ``app``: the FastAPI factory (auth, limits,
  errors); ``server``: run it in a thread or a background process; ``cli``: ``workbench serve``
  and ``workbench keys``.

Nothing here imports Streamlit.
"""
