"""The one Streamlit adapter: cached store and models, session-state keys, the shared sidebar.

Pages lay out widgets and call ``workbench``; everything that touches ``st.cache_resource`` or
session state lives here so pages stay short and the package stays free of Streamlit.
"""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from workbench import loading
from workbench.errors import WorkbenchError
from workbench.store import INSTALLED, Store


def _hand_over_to_app_menu() -> None:
    """Streamlit treats a ``pages/`` folder beside the main script as a legacy multipage app
    until ``st.navigation`` has run once in the process: if the very first request of a fresh
    server names a page URL (a bookmark, a reloaded tab), Streamlit runs that page script alone,
    with a menu of file names. Switch the legacy mode off and rerun, so ``app.py`` builds the
    menu and runs the page."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_hand_over_to_app_menu()


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


@st.cache_resource(show_spinner=False)
def get_store() -> Store:
    return Store()


@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def get_model(model_id: str, device: str, attn_implementation: str = "sdpa") -> loading.Model:
    """One loaded model per (id, device, attention implementation), shared by all sessions.
    Inference is thread-safe (each call builds its own KV cache)."""
    return loading.load_model(
        model_id, store=get_store(), device=device, attn_implementation=attn_implementation
    )


def forget_model(model_id: str) -> None:
    """After remove/reinstall: drop every cached copy of a model."""
    get_model.clear()
    loading.unload(model_id)


@dataclass(frozen=True)
class Selection:
    model_id: str | None
    device: str
    threads: int


def sidebar(capability: str = "generate") -> Selection:
    """Model picker over installed models that have ``capability``, device and threads."""
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
        devices = loading.available_devices()
        if st.session_state.get(Keys.device) not in devices:
            st.session_state[Keys.device] = devices[-1]
        device = st.selectbox("Device", devices, key=Keys.device)
        max_threads = loading.cpu_count()
        threads = st.number_input(
            "CPU threads", min_value=1, max_value=max_threads, value=max_threads, step=1,
            key=Keys.threads, help="torch intra-op threads; recorded with every result.",
        )
        loading.set_threads(int(threads))
    return Selection(model_id, device, int(threads))


def show_error(err: WorkbenchError) -> None:
    st.error(str(err), icon="⚠️")

