import pytest
from streamlit.testing.v1 import AppTest

from workbench.testing import ROOT


@pytest.fixture
def open_page(tiny_store):
    """``open_page("pages/x.py")``: an AppTest of the whole app over the tiny store, switched to
    that page and run once. Streamlit's caches are cleared around each test."""
    import streamlit as st

    st.cache_resource.clear()

    def _open(page: str) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        at.switch_page(page)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    yield _open
    st.cache_resource.clear()
