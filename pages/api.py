"""API page: start and stop the HTTP server, manage its keys, copy client code, try a request.

The server is a process of its own (``workbench serve``) found through its state file under the
store root, so it keeps running across page reloads and sessions; this page only reads and
changes that state.
"""
import time

import pandas as pd
import streamlit as st

from pages._shared import get_store, route_through_app, show_error
from workbench.errors import WorkbenchError
from workbench.serve import client, snippets
from workbench.serve.keys import KeyStore
from workbench.serve.server import (
    START_TIMEOUT_S,
    healthy,
    read_state,
    serve_backends,
    start_background,
    start_seconds,
    stop_background,
)
from workbench.store import INSTALLED


class ApiKeys:
    """Session-state keys of this page."""

    new_key = "api_new_key"  # (name, key) created in this session: shown once, used by "try it"
    answer = "api_answer"  # the last "try it" answer
    try_key = "api_try_key"  # the key "try it" sends


route_through_app()
store = get_store()
keys = KeyStore(store.home)
st.title("API")
st.caption(
    "Serve store models over HTTP: the `/api/generate` call of the original GPT store and an "
    "OpenAI-compatible API (`/v1/models`, `/v1/completions`, `/v1/chat/completions`), with API keys. "
    "Loopback only (127.0.0.1); concurrent requests on one model are decoded together."
)

# --- status ----------------------------------------------------------------------------------
st.subheader("Server")
state = read_state(store.home)
installed = [e.card.id for e in store.list() if e.status == INSTALLED and e.card.can("generate")]
if state:
    up = healthy(state.url)
    (st.success if up else st.warning)(
        f"{'Serving' if up else 'Starting or not answering'} on {state.url} · "
        f"{', '.join(state.models) or 'no models'} · {state.backend} · pid {state.pid} · "
        f"up {time.time() - state.started:.0f} s"
    )
    if st.button("Stop the server", key="api_stop", type="secondary"):
        stop_background(store.home)
        st.rerun()
else:
    st.info("The server is not running.")
    if not installed:
        st.warning("No installed model can generate yet: install one on the **Store** page.")
    models = st.multiselect("Models to serve", installed, default=installed[:1], key="api_models")
    c1, c2 = st.columns(2)
    backends = serve_backends([store.card(m) for m in models])
    backend = c1.selectbox(
        "Backend", backends, key="api_backend",
        help="Every backend but llamacpp decodes concurrent requests together. onnxruntime-fused is "
        "the exact fp32 graph, faster than torch on a CPU; q4a8 and int8 are faster still but change the "
        "text a little, and batching can change it further. docs/serving.md has the measured tokens/s.",
    )
    port = c2.number_input("Port (0 = any free one)", min_value=0, max_value=65535, value=0, key="api_port")
    wait = start_seconds(store, models, backend)
    if wait > START_TIMEOUT_S:
        st.caption(f"The first start exports {backend} for the models to ONNX: about {wait / 60:.0f} min, then "
                   f"cached (or run `workbench export MODEL --variant ...` beforehand).")
    if st.button("Start the server", key="api_start", type="primary", disabled=not models):
        try:
            with st.spinner("Loading the models and starting the server…"):
                start_background(store.home, models, backend=backend, port=int(port) or None, timeout=wait)
            st.rerun()
        except WorkbenchError as err:
            show_error(err)

# --- keys --------------------------------------------------------------------------------------
st.subheader("Keys")
c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
name = c1.text_input("New key name", key="api_key_name", placeholder="e.g. laptop")
if c2.button("Create key", key="api_key_create"):
    try:
        st.session_state[ApiKeys.new_key] = (name, keys.create(name))
        st.session_state[ApiKeys.try_key] = st.session_state[ApiKeys.new_key][1]  # "try it" uses it
    except WorkbenchError as err:
        show_error(err)
created = st.session_state.get(ApiKeys.new_key)
if created:
    st.warning(f"Key **{created[0]}**: copy it now. It is stored hashed and will not be shown again.")
    st.code(created[1], language=None)
listed = keys.list()
if listed:
    st.dataframe(
        pd.DataFrame([{"name": k.name, "starts with": k.prefix + "…",
                       "created": pd.Timestamp(k.created, unit="s")} for k in listed]),
        hide_index=True, width="stretch",
    )
    r1, r2 = st.columns([3, 1], vertical_alignment="bottom")
    victim = r1.selectbox("Key to revoke", [k.name for k in listed], key="api_revoke_name")
    if r2.button("Revoke", key="api_revoke"):
        keys.revoke(victim)
        if created and created[0] == victim:
            del st.session_state[ApiKeys.new_key]
            st.session_state.pop(ApiKeys.try_key, None)
        st.rerun()
else:
    st.caption("No keys yet: every request gets 401 until you create one.")

# --- snippets ------------------------------------------------------------------------------------
st.subheader("Call it")
base = state.url if state else "http://127.0.0.1:8000"
model_id = (state.models[0] if state and state.models else (installed[0] if installed else "MODEL"))
shown_key = created[1] if created else None
t1, t2, t3 = st.tabs(["curl", "requests", "openai"])
t1.code(snippets.curl(base, model_id, shown_key), language="bash")
t2.code(snippets.python_requests(base, model_id, shown_key), language="python")
t3.code(snippets.python_openai(base, model_id, shown_key), language="python")
st.caption(
    "The store's model folders are plain Hugging Face folders: vLLM or TGI can serve the same folder "
    "with the same OpenAI-compatible routes when one machine is not enough (docs/serving.md in the repository)."
)

# --- try it --------------------------------------------------------------------------------------
st.subheader("Try it")
if not state:
    st.caption("Start the server to try a request.")
else:
    text = st.text_area("Text", "The capital of France is", key="api_try_text")
    c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
    try_model = c1.selectbox("Model", state.models, key="api_try_model")
    try_key = c2.text_input("API key", type="password", key=ApiKeys.try_key,
                            help="Filled with the key created on this page; paste another one here.")
    if c3.button("Send", key="api_try_go", type="primary"):
        try:
            st.session_state[ApiKeys.answer] = client.generate(state.url, try_key, try_model, text)
        except WorkbenchError as err:
            show_error(err)
    answer = st.session_state.get(ApiKeys.answer)
    if answer:
        st.markdown(f"**generated_text:** {answer['generated_text']}")
        m1, m2, m3 = st.columns(3)
        m1.metric("Time to first token", f"{answer['timing']['ttft_ms']:.0f} ms")
        m2.metric("Tokens / s", f"{answer['timing']['tokens_per_s']:.1f}")
        m3.metric("Tokens", f"{answer['usage']['completion_tokens']}", help=f"finished by {answer['finish_reason']}")
