"""GPT Store Workbench: `streamlit run app.py`. Builds the menu; pages live in pages/."""
import streamlit as st

import workbench.loading  # noqa: F401  heavy libraries imported once, before any page reruns

st.set_page_config(page_title="GPT Store Workbench", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/generate.py", title="Generate", icon="✍️", default=True),
    st.Page("pages/store.py", title="Store", icon="🏪"),
    st.Page("pages/attention.py", title="Attention", icon="🔍"),
    st.Page("pages/latency.py", title="Latency", icon="⏱️"),
]

st.navigation(PAGES).run()
