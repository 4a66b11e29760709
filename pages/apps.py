"""Apps page: the store front of assistants built on store models, a chat with one (streamed
answers, citations that open to their passage, the exact prompt sent), a create/edit form with a
test chat, duplicate, remove, import and export, and each app's own tests.

Layout only: apps come from ``workbench.apps``, the page's data from ``workbench.views.apps``.
Text that people typed (names, descriptions, instructions, answers) is shown escaped: HTML or
script in it appears as text and never runs."""
import tempfile
from pathlib import Path

import streamlit as st

from pages._shared import Keys, get_store, hand_off, route_through_app, show_error
from workbench.apps import (
    duplicate_app,
    export_app,
    get_card,
    import_app,
    remove_app,
    run_tests,
    save_app,
)
from workbench.apps.catalog import app_digest, ensure_installed
from workbench.common import atomic_write_bytes
from workbench.errors import WorkbenchError
from workbench.store import INSTALLED
from workbench.views import apps as views

VIEWS = ["Store front", "Chat", "Create / edit", "Import"]
# this page's own state (shared state lives in pages._shared.Keys)
VIEW, OPEN, CHATS, EXPORT, EDITING, FLASH, RESULTS = (
    "apps_view", "apps_open", "apps_chats", "apps_export", "apps_editing", "apps_flash", "apps_results")
IMP_FILE, IMP_AS = "apps_imp_file", "apps_imp_as"  # the Import view's uploader and "install it as" box
IMPORTED = "apps_imported"  # {(upload's file_id, "install it as" id or None): the app it became}
SAVED_EDIT, LAST_OPEN = "apps_saved_edit", "apps_last_open"
# The view is kept in VIEW, not in the control's own state: a switch made here (Chat after an import,
# the form after New app) draws the control anew under the next key of VIEW_SWITCHES, so a rerun the
# browser sends with the old control's value (it may not have taken in the switch yet) cannot undo it.
VIEW_SWITCHES = "apps_view_switches"
FORM = "apps_f_"  # prefix of the create/edit form's widget keys (views.apps.form_values names)
BLANK = {"id": "", "name": "", "base_model": "", "description": "", "instructions": "", "greeting": "",
         "starters": "", "temperature": 0.0, "top_p": 0.95, "top_k": 50, "max_new_tokens": 128, "stop": "",
         "seed": 0, "passages": 1, "placement": "system", "max_passage_chars": 1200}

route_through_app()
store = get_store()
st.title("Apps")
st.caption("Assistants built on store models: instructions, starters, settings, and knowledge files that are "
           "searched for every question and cited in the answer. Everything runs here, offline.")


def flash(kind: str, text: str) -> None:
    """A message shown at the top of the next run (after an action that reruns the page)."""
    st.session_state.setdefault(FLASH, []).append((kind, text))


def fill_form(values: dict, editing: tuple | None) -> None:
    for name, value in values.items():
        st.session_state[FORM + name] = value
    st.session_state[FORM + "keep"] = list(editing[2]) if editing else []
    st.session_state[EDITING] = editing


def switch_view(view: str) -> None:
    st.session_state[VIEW] = view
    st.session_state[VIEW_SWITCHES] = st.session_state.get(VIEW_SWITCHES, 0) + 1


def start_new(values: dict | None = None) -> None:
    fill_form({**BLANK, **(values or {})}, None)
    switch_view("Create / edit")


def start_edit(app_id: str) -> None:
    try:
        ensure_installed(store, app_id)
        card = get_card(store, app_id)
        fill_form(views.form_values(card), (app_id, app_digest(store, app_id), card.knowledge_names))
        switch_view("Create / edit")
    except WorkbenchError as err:
        flash("error", str(err))


def open_chat(app_id: str) -> None:
    st.session_state[OPEN] = app_id
    switch_view("Chat")


def ask_export(app_id: str) -> None:
    st.session_state[EXPORT] = app_id


def remove(app_id: str, builtin: bool) -> None:
    """The Remove button's callback: it runs before the page is drawn, so the run the click
    starts lists the apps without this one (no second run in which the old card still shows)."""
    try:
        remove_app(store, app_id)
    except WorkbenchError as err:
        flash("error", str(err))
        return
    st.session_state.get(CHATS, {}).pop(app_id, None)
    if st.session_state.get(EXPORT) == app_id:
        st.session_state.pop(EXPORT)
    flash("ok", f"Removed {app_id}." + (" The built-in app comes back as shipped when it is next used."
                                        if builtin else ""))


draft = st.session_state.pop(Keys.app_draft, None)  # from the Customise page: "make an app from it"
if draft:
    start_new(draft)
just_saved = st.session_state.pop(SAVED_EDIT, None)  # a saved app stays open in the form, as saved
if just_saved:
    st.session_state[EDITING] = just_saved
    st.session_state[FORM + "keep"] = list(just_saved[2])
if FORM + "id" not in st.session_state:
    fill_form(BLANK, None)
# widget state is dropped while another page is open: the open app is kept apart too
st.session_state.setdefault(VIEW, VIEWS[0])
for kind, text in st.session_state.pop(FLASH, []):
    (st.error if kind == "error" else st.success)(text)

view = st.segmented_control("View", VIEWS, key=f"{VIEW}_{st.session_state.get(VIEW_SWITCHES, 0)}",
                            default=st.session_state[VIEW], required=True, label_visibility="collapsed") or VIEWS[0]
st.session_state[VIEW] = view
problems: list = []
try:
    rows = views.front_rows(store, problems)
except WorkbenchError as err:
    show_error(err)
    rows = []
for path, message in problems:
    st.warning(f"Skipped the app in {path}: {message}", icon="⚠️")
by_id = {r.id: r for r in rows}


def install_base(model_id: str, key: str) -> None:
    """An install button for a missing base model, with the install's progress."""
    if store.catalog.resolve(model_id) is None or not st.button(f"Install {model_id}", key=key, type="primary"):
        return
    with st.status(f"Installing {model_id}", expanded=True) as status:
        bar = st.progress(0.0, text="starting…")
        try:
            store.install(model_id, progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
        except WorkbenchError as err:
            status.update(label=f"Installing {model_id} failed", state="error")
            show_error(err)
            return
        status.update(label=f"Installed {model_id}", state="complete", expanded=False)
    st.rerun()


def export_buttons(app_id: str, key: str) -> None:
    """Download buttons for the app as a .gptapp and as an Ollama Modelfile, with what the
    Modelfile leaves out."""
    try:
        with tempfile.TemporaryDirectory(prefix="wb-app-export-") as tmp:
            pkg, _ = export_app(store, app_id, Path(tmp) / f"{app_id}.gptapp")
            mf, notes = export_app(store, app_id, Path(tmp) / "Modelfile", format="modelfile")
            pkg_bytes, mf_bytes = pkg.read_bytes(), mf.read_bytes()
    except WorkbenchError as err:
        show_error(err)
        return
    d1, d2 = st.columns(2)
    d1.download_button("Download .gptapp", pkg_bytes, f"{app_id}.gptapp", "application/zip", key=f"{key}_gptapp",
                       help="One file: the card, the knowledge files and a manifest of their sha256.")
    d2.download_button("Download Modelfile", mf_bytes, f"{app_id}.Modelfile", "text/plain", key=f"{key}_modelfile",
                       help="For Ollama: FROM, SYSTEM, PARAMETER, MESSAGE.")
    for note in notes:
        st.caption(views.md(note))


def show_results(app_id: str) -> None:
    result = st.session_state.get(RESULTS, {}).get(app_id)
    if result:
        with st.expander(f"Last run here: {result['passed']}/{result['total']} passed", expanded=True):
            st.dataframe([{"question": r["question"], "answer": r["answer"], "passed": r["passed"],
                           "accepted": ", ".join(r["accepted"])} for r in result["results"]], hide_index=True)


def front() -> None:
    if st.button("New app", key="apps_new", type="primary", on_click=start_new):
        pass
    if not rows:
        st.info("No apps yet: make one with **New app**.")
    for row in rows:
        card, entry = row.entry.card, row.entry
        k = row.id.replace(".", "_")
        with st.container(border=True, key=f"apps_card_{k}"):
            st.markdown(f"#### {views.md(card.name)}")
            st.caption(views.md(f"{row.id} · on {card.base_model} · version {card.version}"
                                + (" · built-in" if entry.builtin else "") + (f" · by {card.author}" if card.author else "")))
            if card.description:
                st.markdown(views.md(card.description))
            if card.starters:
                st.markdown("**Try:** " + " · ".join(f"“{views.md(s)}”" for s in card.starters))
            state = row.tests.state if card.tests else "none"
            (st.success if state == "fresh" else st.caption if state == "none" else st.warning)(views.md(row.tests_line))
            if not entry.base_installed:
                st.warning(entry.problem, icon="📦")
                install_base(card.base_model, f"apps_install_{k}")
            b = st.columns(6)
            b[0].button("Chat", key=f"apps_chat_{k}", on_click=open_chat, args=(row.id,), type="primary",
                        disabled=not entry.base_installed)
            b[1].button("Edit", key=f"apps_edit_{k}", on_click=start_edit, args=(row.id,))
            if b[2].button("Duplicate", key=f"apps_dup_{k}"):
                try:
                    new_id = views.free_id(store, f"{row.id}-copy")
                    duplicate_app(store, row.id, new_id)
                    flash("ok", f"Duplicated {row.id} as {new_id}: edit it to make it yours.")
                    st.rerun()
                except WorkbenchError as err:
                    show_error(err)
            b[3].button("Export", key=f"apps_exp_{k}", on_click=ask_export, args=(row.id,))
            if b[4].button("Run its tests", key=f"apps_test_{k}", disabled=not card.tests or not entry.base_installed,
                           help="Answers its own test questions greedily and records the score here."):
                try:
                    with st.spinner(f"Running the {len(card.tests)} tests of {row.id}…"):
                        result = run_tests(store, row.id)
                    st.session_state.setdefault(RESULTS, {})[row.id] = result
                    flash("ok", f"{row.id}: {result['passed']}/{result['total']} of its own tests passed.")
                    st.rerun()
                except WorkbenchError as err:
                    show_error(err)
            b[5].button("Remove", key=f"apps_rm_{k}", disabled=not entry.installed, on_click=remove,
                        args=(row.id, entry.builtin),
                        help="A built-in app comes back as shipped the next time it is used.")
            if st.session_state.get(EXPORT) == row.id:
                export_buttons(row.id, f"apps_dl_{k}")
            show_results(row.id)


def answer_extras(app_id: str, answer, n: int) -> None:
    """Under an answer: its citations (each opens to the passage), notes, the exact prompt, and
    the hand-off of that prompt to the Attention and Inside pages."""
    if answer.citations:
        st.caption("Sources")
        for i, c in enumerate(answer.citations, 1):
            with st.expander(views.md(views.citation_title(i, c)), key=f"apps_cite_{n}_{i}"):
                st.text(c.text)
    for note in answer.notes:
        st.caption(views.md(note))
    with st.expander("The exact prompt sent", key=f"apps_prompt_{n}"):
        st.code(answer.prompt, language=None, wrap_lines=True)
    st.caption(f"{answer.model} · {answer.prompt_tokens} prompt tokens · {answer.completion_tokens} new · "
               f"first token after {answer.ttft_ms:.0f} ms · finished by {answer.finish_reason}")
    c1, c2, _ = st.columns([1, 1, 3])
    handed = views.handoff(app_id, answer)
    if c1.button("Open in Attention", key=f"apps_att_{n}"):
        hand_off("pages/attention.py", {Keys.app_answer: {**handed, "open": "attention"}, Keys.model: answer.model})
    if c2.button("Open in Inside", key=f"apps_ins_{n}"):
        hand_off("pages/inside.py", {Keys.app_answer: {**handed, "open": "inside"}, Keys.model: answer.model})


def turn(app, history: list, text: str) -> None:
    """Ask ``text``; stream the answer; keep both turns in ``history`` (nothing kept on an error)."""
    with st.chat_message("user"):
        st.markdown(views.md(text))
    past = [{"role": t["role"], "content": t["content"]} for t in history]
    with st.chat_message("assistant"):
        try:
            stream = app.stream(text, past)
            with st.container(key="apps_streaming"):
                st.write_stream(views.md(piece) for piece in stream)
            answer = stream.last
        except WorkbenchError as err:
            show_error(err)
            return
        history += [{"role": "user", "content": text, "answer": None},
                    {"role": "assistant", "content": answer.text, "answer": answer}]
        answer_extras(app.id, answer, len(history) - 1)


def chat_panel(app_id: str, prefix: str, input_label: str) -> None:
    """A chat with ``app_id``: greeting, history with citations, starters as buttons, input."""
    row = by_id.get(app_id)
    if row is None:
        st.info("Pick an app.")
        return
    if not row.entry.base_installed:
        st.warning(row.entry.problem, icon="📦")
        install_base(row.entry.card.base_model, f"{prefix}_install")
        return
    try:
        app = store.app(app_id)
    except WorkbenchError as err:
        show_error(err)
        return
    chats = st.session_state.setdefault(CHATS, {})
    history = chats.setdefault(app_id, [])
    with st.expander("Instructions (its system prompt)"):
        st.text(app.card.instructions or "(none)")
    if app.card.greeting:
        with st.chat_message("assistant"):
            st.markdown(views.md(app.card.greeting))
    for n, t in enumerate(history):
        with st.chat_message(t["role"]):
            st.markdown(views.md(t["content"]))
            if t.get("answer") is not None:
                answer_extras(app_id, t["answer"], n)
    asked = None
    if app.card.starters:
        cols = st.columns(min(len(app.card.starters), 3))
        for i, s in enumerate(app.card.starters):
            if cols[i % len(cols)].button(views.md(s), key=f"{prefix}_starter_{i}"):
                asked = s
    text = st.chat_input(input_label, key=f"{prefix}_input") or asked
    if history and st.button("Clear the chat", key=f"{prefix}_clear"):
        history.clear()
        st.rerun()
    if text:
        turn(app, history, text)


def chat() -> None:
    ready = [r.id for r in rows]
    if not ready:
        st.info("No apps yet: make one in **Create / edit**.")
        return
    if st.session_state.get(OPEN) not in ready:
        last = st.session_state.get(LAST_OPEN)
        st.session_state[OPEN] = last if last in ready else next((r.id for r in rows if r.entry.base_installed), ready[0])
    app_id = st.selectbox("App", ready, key=OPEN, format_func=lambda i: f"{by_id[i].entry.card.name} ({i})")
    st.session_state[LAST_OPEN] = app_id
    chat_panel(app_id, "apps_chat", f"Ask {by_id[app_id].entry.card.name}")


def base_models(current: str) -> list[str]:
    ids = [e.card.id for e in store.list() if e.status == INSTALLED and e.card.can("generate")]
    return ids + ([current] if current and current not in ids else [])


def create() -> None:
    editing = st.session_state.get(EDITING)
    if editing:
        st.markdown(f"Editing **{views.md(editing[0])}**. Saving replaces it; a new id saves a copy.")
        if st.button("Start a new app instead", key="apps_f_new", on_click=start_new):
            pass
    f = FORM
    c1, c2 = st.columns(2)
    c1.text_input("Id", key=f + "id", help="Lower-case letters, digits, '.', '-', '_'; not a model's id.")
    c2.text_input("Name", key=f + "name")
    models = base_models(st.session_state.get(f + "base_model", ""))
    if not models:
        st.warning("No model is installed: install one on the **Store** page first.")
        return
    if st.session_state.get(f + "base_model") not in models:
        st.session_state[f + "base_model"] = models[0]
    st.selectbox("Base model", models, key=f + "base_model", format_func=lambda i: f"{store.card(i).name} ({i})")
    st.text_area("Description", key=f + "description", height=68)
    st.text_area("Instructions (the system prompt)", key=f + "instructions", height=110)
    st.text_input("Greeting", key=f + "greeting")
    st.text_area("Conversation starters (one a line)", key=f + "starters", height=90)
    with st.expander("Generation settings"):
        g1, g2, g3 = st.columns(3)
        g1.number_input("Temperature (0 = greedy)", 0.0, 2.0, step=0.05, key=f + "temperature")
        g1.number_input("Max new tokens", 1, 4096, step=1, key=f + "max_new_tokens")
        g2.number_input("Top-p", 0.01, 1.0, step=0.05, key=f + "top_p")
        g2.number_input("Top-k (0 = off)", 0, 100_000, step=1, key=f + "top_k")
        g3.number_input("Seed", 0, 2**32 - 1, step=1, key=f + "seed")
        g3.text_area("Stop strings (one a line)", key=f + "stop", height=68,
                     help="Escaped as in JSON: \\n for a line break, \\t for a tab.")
    st.markdown("**Knowledge**")
    if editing and editing[2]:
        st.multiselect("Keep these knowledge files", list(editing[2]), key=f + "keep")
    uploads = st.file_uploader(
        "Add knowledge files", accept_multiple_files=True, key=f + "upload",
        help="Plain text (.txt), Markdown (.md), HTML (.html) or JSON Lines (.jsonl); indexed once when saved.")
    k1, k2, k3 = st.columns(3)
    k1.number_input("Passages per question", 1, 8, step=1, key=f + "passages")
    k2.selectbox("Place them in", ["system", "user"], key=f + "placement",
                 format_func=lambda p: {"system": "the system prompt", "user": "the user's turn"}[p])
    k3.number_input("Longest passage (characters)", 200, 20_000, step=100, key=f + "max_passage_chars")
    if st.button("Save the app", key="apps_f_save", type="primary"):
        save(editing, uploads or [])
    saved = st.session_state.get(f + "saved")
    if saved and saved in by_id:
        st.divider()
        st.markdown(f"**Try {views.md(saved)}** (the saved version)")
        chat_panel(saved, "apps_try", "Test it")


def save(editing, uploads) -> None:
    values = {name: st.session_state.get(FORM + name) for name in BLANK}
    existing = get_card(store, editing[0]) if editing else None
    try:
        card = views.card_from_form(values, existing)
        same = bool(editing) and card.id == editing[0]
        with tempfile.TemporaryDirectory(prefix="wb-app-upload-") as tmp:
            kept = views.knowledge_paths(store, editing[0], st.session_state.get(FORM + "keep", [])) if editing else []
            added = views.write_uploads(tmp, [(u.name, u.getvalue()) for u in uploads])
            save_app(store, card, kept + added, replace=same, expected_digest=editing[1] if same else None,
                     require_base=True)
    except WorkbenchError as err:
        show_error(err)
        return
    saved = get_card(store, card.id)
    st.session_state[FORM + "saved"] = card.id
    st.session_state.get(CHATS, {}).pop(card.id, None)
    n = len(saved.knowledge.files)
    flash("ok", f"Saved {card.id}" + (f" with {n} knowledge file(s), indexed." if n else "."))
    st.session_state[SAVED_EDIT] = (card.id, app_digest(store, card.id), saved.knowledge_names)
    st.rerun()


def import_upload() -> None:
    """The Import button's callback: it runs before the page is drawn, so the run that the click
    starts already shows the imported app's chat (no second run to wait for, or to be overtaken
    by a rerun the browser sent while it still showed the Import view). Each upload is imported
    once: the same upload sent again (a double click, a resent message) opens its app's chat, unless
    that app was removed since."""
    file = st.session_state.get(IMP_FILE)
    if file is None:
        return
    as_id = (st.session_state.get(IMP_AS) or "").strip() or None
    done = st.session_state.setdefault(IMPORTED, {})
    upload = (file.file_id, as_id)
    if upload not in done or not views.is_installed(store, done[upload]):
        try:
            with tempfile.TemporaryDirectory(prefix="wb-app-import-") as tmp:
                path = atomic_write_bytes(Path(tmp) / views.flat_name(file.name), file.getvalue())
                done[upload] = import_app(store, path, as_id).name
        except WorkbenchError as err:
            flash("error", str(err))
            return
        flash("ok", f"Imported {done[upload]}: checked every file against its manifest.")
    open_chat(done[upload])


def importer() -> None:
    file = st.file_uploader("A .gptapp file", key=IMP_FILE,
                            help="Made with Export here or `workbench apps export ID --out FILE.gptapp`.")
    as_id = st.text_input("Install it as (optional: another id)", key=IMP_AS)
    st.button("Import", key="apps_imp_go", type="primary", disabled=file is None, on_click=import_upload)
    # An upload already imported is still in the uploader only in a rerun that the browser sent
    # before it drew the imported app's chat (it forgets the upload once the uploader is gone):
    # that run shows the chat too, here under the form.
    imported = st.session_state.get(IMPORTED, {}).get((file.file_id, as_id.strip() or None)) if file else None
    if imported in by_id:
        st.divider()
        name = by_id[imported].entry.card.name
        st.markdown(f"**Imported from this file: {views.md(name)}**")
        chat_panel(imported, "apps_imp_chat", f"Ask {name}")


if view == "Store front":
    front()
elif view == "Chat":
    chat()
elif view == "Create / edit":
    create()
else:
    importer()
