"""The one Streamlit adapter: cached store and models, session-state keys, the shared sidebar.

Pages lay out widgets and call ``workbench``; everything that touches ``st.cache_resource`` or
session state lives here so pages stay short and the package stays free of Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

import streamlit as st

from workbench.common import cpu_count
from workbench.errors import WorkbenchError
from workbench.store import INSTALLED, Store


class Keys:
    """Session-state keys shared between pages."""

    model = "wb_model"
    device = "wb_device"
    threads = "wb_threads"
    last_generation = "wb_last_generation"  # GenerationResult of the Generate page
    chat = "wb_chat"  # list of {"role", "content"} messages
    attention = "wb_attention"  # AttentionResult shown on the Attention page
    attention_generation = "wb_attention_generation"  # (GenerationResult, GenerationAttention)
    attention_tab = "wb_attention_tab"  # the open tab of the Attention page
    latency = "wb_latency"  # (BenchResult, notes) shown on the Latency page
    routed = "wb_routed"  # set by app.py on every run: the page runs inside the app's menu
    wanted_page = "wb_wanted_page"  # a page asked for before app.py had run (see route_through_app)
    job = "wb_job"  # the fine-tuning job the Customise page follows
    app_answer = "wb_app_answer"  # an app's answer handed to Attention / Inside (views.apps.handoff)
    app_draft = "wb_app_draft"  # values handed to the Apps page's create form (views.apps.form_values keys)


def route_through_app() -> None:
    """Streamlit runs a ``pages/`` script on its own (the legacy multipage mode) when the first
    request of a fresh server names a page URL, before ``app.py`` has called ``st.navigation``.
    Then: remember the page, and switch to the app, which builds the menu and opens that page
    (public API only: ``st.switch_page``; the file-name menu is off in ``.streamlit/config.toml``)."""
    if st.session_state.get(Keys.routed):
        return
    path = urlparse(st.context.url or "").path.rstrip("/")
    st.session_state[Keys.wanted_page] = path.rpartition("/")[2]
    st.switch_page("app.py")


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


def get_model(model_id: str, device: str, attn_implementation: str = "sdpa"):
    """The loaded model from the workbench's one bounded model cache (shared by all sessions, the
    CLI and notebooks in this process). Inference is thread-safe (each call builds its own KV cache)."""
    from workbench.runtime import load_model

    with st.spinner("Loading the model…"):
        return load_model(model_id, store=get_store(), device=device, attn_implementation=attn_implementation)


def forget_model(model_id: str) -> None:
    """After remove/reinstall: drop every cached copy of a model."""
    from workbench.runtime import unload

    unload(model_id)


@dataclass(frozen=True)
class Selection:
    model_id: str | None
    device: str
    threads: int


def sidebar(capability: str = "generate", devices: bool = True) -> Selection:
    """Model picker over installed models that have ``capability``; with ``devices`` also the
    device and CPU threads (which load torch: the Store page leaves them out)."""
    route_through_app()
    store = get_store()
    installed = [e for e in store.list() if e.status == INSTALLED and e.card.can(capability)]
    with st.sidebar:
        st.markdown("### Model")
        if not installed:
            st.info("No installed model can do this yet. Install one on the **Store** page.")
            model_id = None
        else:
            ids = [e.card.id for e in installed]
            current = st.session_state.get(Keys.model)
            if current not in ids:
                default = next((e.card.id for e in installed if e.card.default), ids[0])
                st.session_state[Keys.model] = default
            model_id = st.selectbox(
                "Model",
                ids,
                key=Keys.model,
                format_func=lambda i: store.card(i).name,
                help="Installed models only; install more on the Store page.",
            )
        max_threads = cpu_count()
        if not devices:
            return Selection(model_id, "cpu", int(st.session_state.get(Keys.threads, max_threads)))
        from workbench.runtime import available_devices, set_threads

        names = available_devices()
        if st.session_state.get(Keys.device) not in names:
            st.session_state[Keys.device] = names[-1]
        device = st.selectbox("Device", names, key=Keys.device)
        threads = st.number_input(
            "CPU threads", min_value=1, max_value=max_threads, value=max_threads, step=1,
            key=Keys.threads, help="torch intra-op threads; recorded with every result.",
        )
        set_threads(int(threads))
    return Selection(model_id, device, int(threads))


def hand_off(page: str, state: dict) -> None:
    """Open ``page`` with ``state`` already in session state: written in this run, before the
    switch, so the next page's widgets start from those values (no default-vs-state warning)."""
    st.session_state.update(state)
    st.switch_page(page)


def show_error(err: WorkbenchError) -> None:
    st.error(str(err), icon="⚠️")

