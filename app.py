"""GPT Store Workbench: `workbench app` (or `streamlit run app.py` in the repo). Builds the menu;
pages live in pages/, found relative to this file, so the wheel's copy (workbench/app/, see
setup.py) works as the repo does.

The menu is drawn here with `st.page_link` (Streamlit's own file-name menu of the pages/ folder is
off in .streamlit/config.toml), so the first paint of a fresh server already shows the real one.
"""
import streamlit as st

from pages._shared import Keys

st.set_page_config(page_title="GPT Store Workbench", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/generate.py", title="Generate", icon="✍️", default=True),
    st.Page("pages/store.py", title="Store", icon="🏪"),
    st.Page("pages/apps.py", title="Apps", icon="🧩"),
    st.Page("pages/attention.py", title="Attention", icon="🔍"),
    st.Page("pages/inside.py", title="Inside", icon="🧠"),
    st.Page("pages/latency.py", title="Latency", icon="⏱️"),
    st.Page("pages/customise.py", title="Customise", icon="🧵"),
    st.Page("pages/api.py", title="API", icon="🔌"),
]

page = st.navigation(PAGES, position="hidden")
st.session_state[Keys.routed] = True
wanted = st.session_state.pop(Keys.wanted_page, None)
target = next((p for p in PAGES if p.url_path == wanted), None)
if target is not None and target.url_path != page.url_path:
    st.switch_page(target)  # a bookmarked page asked for before this script had run
with st.sidebar.container(key="wb_menu"):
    for p in PAGES:
        st.page_link(p)
page.run()
