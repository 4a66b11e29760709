"""Customise page: pick a dataset (the store's or your file), set LoRA hyperparameters, start a
fine-tuning job, watch its train/eval loss live, stop, resume, finish into a new store model,
and compare before and after.

Layout only: datasets are ``workbench.data``, jobs ``workbench.finetune`` (the job runs in its own
worker process and writes a JSONL log, so a reload re-attaches to it), figures
``workbench.views.finetune``."""
from pathlib import Path

import pandas as pd
import streamlit as st

from pages._shared import Keys, get_store, hand_off, show_error, sidebar
from workbench.data.install import add_dataset, catalog, is_installed, keep_upload
from workbench.errors import WorkbenchError
from workbench.finetune import jobs
from workbench.finetune.config import FinetuneConfig, proposed_out_id
from workbench.views.finetune import loss_figure

REFRESH_S = 2.0

sel = sidebar("generate", devices=False)
st.title("Customise")
st.caption(
    "Fine-tune a store model on a dataset with LoRA, then use the result like any store model. The "
    "job runs in its own process: reload the page or close the tab, it keeps going and this page "
    "re-attaches. One job runs at a time on this machine; starting another is refused."
)
store = get_store()
if sel.model_id is None:
    st.stop()
base = store.card(sel.model_id)

with st.container(border=True, key="ft_settings"):
    st.markdown("#### Dataset")
    cards = list(catalog(store))
    c1, c2 = st.columns([3, 2])
    choice = c1.radio("Source", ["Store dataset", "Your file"], horizontal=True, key="ft_source")
    dataset_spec = dataset_name = None
    if choice == "Store dataset":
        ids = [c.id for c in cards]
        picked = c1.selectbox("Dataset", ids, key="ft_dataset",
                              format_func=lambda i: f"{i} ({'installed' if is_installed(store, i) else 'installs on start'})")
        if picked:
            card = next(c for c in cards if c.id == picked)
            c2.caption(f"{card.description} Licence: {card.license}. Held out: {', '.join(card.eval) or 'every 10th record'}.")
            dataset_spec = dataset_name = picked
    else:
        upload = c1.file_uploader("A .txt, or a .jsonl of {text} / {instruction, input, output} / {messages}",
                                  type=["txt", "jsonl", "json", "md"], key="ft_upload")
        c2.caption("Plain text keeps its last tenth for evaluation; JSONL holds out every 10th record. Chat "
                   "messages are rendered with the base model's chat template.")
        if upload is not None:
            target = keep_upload(store, upload.name, upload.getvalue())  # by content: a job's data never changes
            dataset_spec, dataset_name = str(target), upload.name
            new_id = c1.text_input("Keep it in the store as", value="", key="ft_keep_id",
                                   placeholder="an id, e.g. my-notes (optional)")
            if new_id and c1.button("Add to the store", key="ft_keep"):
                try:
                    add_dataset(store, new_id.strip(), target)
                    st.success(f"Added dataset {new_id}.")
                except WorkbenchError as err:
                    show_error(err)

    st.markdown("#### LoRA and training")
    d = FinetuneConfig(base.id, "-", "-")
    h1, h2, h3, h4 = st.columns(4)
    rank = h1.number_input("Rank", 1, 256, d.rank, key="ft_rank")
    alpha = h2.number_input("Alpha", 1, 512, d.alpha, key="ft_alpha")
    dropout = h3.number_input("Dropout", 0.0, 0.9, d.dropout, step=0.05, key="ft_dropout")
    lr = h4.number_input("Learning rate", 1e-6, 0.5, d.learning_rate, format="%.0e", key="ft_lr")
    h5, h6, h7, h8 = st.columns(4)
    steps = h5.number_input("Steps", 1, 100_000, d.max_steps, key="ft_steps")
    seq = h6.number_input("Sequence length", 8, 4096, d.seq_length, key="ft_seq")
    batch = h7.number_input("Batch", 1, 256, d.batch_size, key="ft_batch")
    seed = h8.number_input("Seed", 0, 2**31 - 1, d.seed, key="ft_seed")
    t1, t2 = st.columns([3, 1])
    targets = t1.text_input("Target modules", ", ".join(d.target_modules), key="ft_targets",
                            help="all-linear: every linear layer but the output head; or names like q_proj, v_proj.")
    threads = t2.number_input("Training threads (0: auto)", 0, 256, d.threads, key="ft_threads",
                              help="torch CPU threads of the job. Auto takes the CPUs other work leaves free "
                                   "(by the load average): on a busy CPU one thread beats two.")
    taken_ids = {j.out for j in jobs.list_jobs(store) if j.status != jobs.FINISHED}
    proposal = proposed_out_id(base.id, dataset_name or "tuned",
                               taken=lambda i: i in store.catalog or i in taken_ids)
    if st.session_state.get("ft_out_proposed") != proposal:  # a new base or dataset: a new proposal
        st.session_state["ft_out_proposed"] = st.session_state["ft_out"] = proposal
    out = st.text_input("New model id", key="ft_out",
                        help="Lowercase letters, digits, '.', '_' or '-'; not an id already in the store.")
    out_problem = None
    try:
        jobs.check_new_model_id(store, out.strip())
    except WorkbenchError as err:
        out_problem = err
        show_error(err)
    start = st.button("Start fine-tuning", type="primary", key="ft_start",
                      disabled=dataset_spec is None or out_problem is not None)

if start:
    try:
        config = FinetuneConfig(
            base.id, dataset_spec, out.strip(), rank=int(rank), alpha=int(alpha), dropout=float(dropout),
            learning_rate=float(lr), max_steps=int(steps), seq_length=int(seq), batch_size=int(batch),
            seed=int(seed), threads=int(threads), target_modules=tuple(t.strip() for t in targets.split(",") if t.strip()),
        )
        st.session_state[Keys.job] = jobs.start_job(store, config)
    except WorkbenchError as err:
        show_error(err)

all_jobs = jobs.list_jobs(store)
if not all_jobs:
    st.info("No fine-tuning job yet: pick a dataset and press **Start fine-tuning**.")
    st.stop()
running = jobs.active_job(store)
job_ids = [j.job_id for j in all_jobs]
if st.session_state.get(Keys.job) not in job_ids:
    st.session_state[Keys.job] = running.job_id if running else job_ids[0]
job_id = st.selectbox("Job", job_ids, key=Keys.job)


@st.fragment(run_every=REFRESH_S)
def job_panel(job_id: str) -> None:
    """Redrawn every few seconds from the job's files, so it survives a reload."""
    try:
        now = jobs.status(store, job_id)
        events = jobs.events(store, job_id)
    except WorkbenchError as err:
        show_error(err)
        return
    with st.container(key="ft_job"):
        st.markdown(f"**{now.base} → {now.out}** on `{Path(now.dataset).name}` · status **{now.status}**")
        total = max(now.max_steps, 1)
        eta = f", about {now.eta_s:.0f} s left" if now.eta_s is not None else ""
        st.progress(min(now.step / total, 1.0), text=f"step {now.step} of {now.max_steps} (saved: {now.saved_step}){eta}")
        if now.note:
            st.warning(now.note)
        if now.error:
            st.error(now.error, icon="⚠️")
        steps = [e for e in events if e.get("event") == "step"]
        if steps:
            last = steps[-1]
            m1, m2, m3 = st.columns(3)
            m1.metric("train loss", f"{last['loss']:.3f}")
            m2.metric("tokens/s", f"{last['tokens_per_s']:.0f}")
            evals = [e for e in events if e.get("event") == "eval"]
            m3.metric("eval loss", f"{evals[-1]['eval_loss']:.3f}" if evals else "–")
        st.plotly_chart(loss_figure(events, "Train and eval loss"), key=f"ft_loss_{job_id}")
        b1, b2, b3 = st.columns(3)
        if b1.button("Stop (saves)", key="ft_stop", disabled=now.status not in (jobs.RUNNING, jobs.STOPPING)):
            st.info(jobs.stop_job(store, job_id))
        if b2.button("Resume", key="ft_resume", disabled=now.status not in (jobs.STOPPED, jobs.FAILED)):
            try:
                st.info(jobs.resume_job(store, job_id))
            except WorkbenchError as err:
                show_error(err)
        if b3.button("Finish → new model", key="ft_finish", disabled=now.status not in (jobs.STOPPED, jobs.TRAINED)):
            try:
                st.info(jobs.finish_job(store, job_id))
            except WorkbenchError as err:
                show_error(err)
        if now.status == jobs.FINISHED:
            show_comparison(job_id, now.model_id)


def show_comparison(job_id: str, model_id: str) -> None:
    result = jobs.comparison(store, job_id)
    if result is None:
        return
    before, after = result["perplexity_before"], result["perplexity_after"]
    st.success(f"Added **{model_id}** to the store: it is in every page's model picker now.")
    p1, p2 = st.columns(2)
    p1.metric("held-out perplexity, base", f"{before['perplexity']:.2f}")
    p2.metric("held-out perplexity, tuned", f"{after['perplexity']:.2f}",
              delta=f"{after['perplexity'] - before['perplexity']:+.2f}", delta_color="inverse")
    st.caption(f"{after['tokens']} held-out tokens, window {after['window']}, stride {after['stride']}.")
    st.dataframe(pd.DataFrame(result["generations"]), hide_index=True, key="ft_compare")
    if st.button("Make an app from it", key="ft_make_app",
                 help="Opens the Apps page's form with this model as the base: add instructions and knowledge."):
        draft = {"id": f"{model_id}-app"[:64], "name": f"{model_id} app", "base_model": model_id}
        hand_off("pages/apps.py", {Keys.app_draft: draft})


job_panel(job_id)
