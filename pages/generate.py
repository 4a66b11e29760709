"""Generate page: prompt or chat, sampling controls, streamed output, per-token probabilities,
and two models side by side on the same prompt."""
import streamlit as st

from pages._shared import Keys, get_model, get_store, show_error, sidebar
from workbench.errors import WorkbenchError
from workbench.onnx import cached_export
from workbench.runtime.backends import BACKEND_VARIANTS, available_backends, make_backend
from workbench.views.generation import alternatives_frame, probability_figure, tokens_html
from workbench.store import INSTALLED

sel = sidebar("generate")
st.title("Generate")
if sel.model_id is None:
    st.stop()
store = get_store()
card = store.card(sel.model_id)

mode = st.segmented_control(
    "Mode", ["Prompt", "Chat", "Side by side"], default="Prompt", key="gen_mode",
    help="Prompt: the model continues your text. Chat: your message goes through the model's chat "
    "template (instruct models). Side by side: two models, same prompt and settings.",
) or "Prompt"

with st.expander("Decoding settings", expanded=False):
    c1, c2, c3 = st.columns(3)
    max_new = c1.number_input("Max new tokens", min_value=1, max_value=1024, value=48, key="gen_max_new")
    sample = c1.toggle("Sample (off = greedy)", value=False, key="gen_sample")
    temperature = c2.slider("Temperature", 0.0, 2.0, 0.7, 0.05, disabled=not sample, key="gen_temperature")
    top_k = c2.number_input("Top-k (0 = off)", min_value=0, max_value=1000, value=50, disabled=not sample, key="gen_top_k")
    top_p = c3.slider("Top-p", 0.05, 1.0, 0.95, 0.05, disabled=not sample, key="gen_top_p")
    rep = c3.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05, key="gen_rep")
    seed = c1.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, key="gen_seed")
    backend_name = c2.selectbox(
        "Backend", available_backends(card), key="gen_backend",
        help="torch eager, or ONNX Runtime on an exported graph (exported once with progress, then "
        "cached; fused is the same fp32 math in fewer ops; q4 runs the model's own 4-bit GGUF blocks "
        "with the same weights; int8 and q4a8 are faster and drift; llamacpp runs the GGUF in "
        "llama.cpp, if installed). The Latency page times and checks them.",
    )
settings = dict(
    max_new_tokens=int(max_new), do_sample=bool(sample), temperature=float(temperature),
    top_k=int(top_k), top_p=float(top_p), repetition_penalty=float(rep), seed=int(seed),
)


def show_metrics(result, compact: bool = False) -> None:
    """The run's speed; ``compact`` lays the four numbers out 2 x 2 for half-width columns."""
    m1, m2, m3, m4 = (st.columns(2) + st.columns(2)) if compact else st.columns(4)
    m1.metric("Time to first token", f"{result.ttft_ms:.0f} ms")
    m2.metric("Tokens / s", f"{result.tokens_per_s:.1f}")
    m3.metric("Tokens", f"{len(result.token_ids)}", help=f"stopped at: {result.finish_reason}")
    m4.metric("Decode", f"{result.decode_ms_per_token:.0f} ms/token")
    st.caption(
        f"{result.model} · {result.backend} on {result.device} · {result.threads} threads · "
        f"prompt {len(result.prompt_ids)} tokens · finished by {result.finish_reason}"
    )


def explain(result) -> None:
    """Teaching note, with this generation's own numbers."""
    n = len(result.prompt_ids)
    with st.expander("How this was generated: prefill, decode, the KV cache, sampling"):
        st.markdown(
            f"""
**Prefill.** The prompt's {n} tokens went through the network in one forward pass
({result.prefill_ms:.0f} ms here). Every layer computed, for every prompt token, a *key* and a
*value* vector per attention head, and the last position's output gave the probabilities of the
first new token.

**Decode.** Each further token needs one more forward pass, for that one token only
({result.decode_ms_per_token:.0f} ms per token here). Its query attends to the keys and values of
all earlier tokens, which were kept from before: that store is the **KV cache**. Without it, every
step would re-run the whole prefix, so the *t*-th token would cost a forward over *t* tokens;
with it, a step costs one token's worth of matrix multiplies plus reading the cache. On a CPU a
decode step mostly waits on memory, since all the weights are read once per token.

**Choosing the token.** The network outputs one score (logit) per vocabulary entry; softmax turns
them into probabilities. *Greedy* takes the most likely token. *Sampling* divides the logits by
the temperature (below 1 sharpens, above 1 flattens), keeps the top-k tokens and the smallest set
whose probabilities add up to top-p, and draws one at random with the seed, so the same seed gives
the same text. The colours above show the model's own probability of each token before any of
that reshaping.
"""
        )


def show_tokens(result, key: str) -> None:
    if not result.tokens:
        st.info("The model stopped at once (its first token was end-of-text).")
        return
    st.html(tokens_html(result))
    with st.expander("Token probabilities and alternatives"):
        st.plotly_chart(probability_figure(result), key=f"{key}_probs")
        index = st.slider("Generated token", 0, max(len(result.tokens) - 1, 1), 0, key=f"{key}_tok")
        index = min(index, len(result.tokens) - 1)
        st.dataframe(alternatives_frame(result, index), hide_index=True)


def backend_for(model):
    """The picked backend for ``model`` (None = torch, also when the model cannot run it);
    a first ONNX export runs here in a status box with its progress."""
    if backend_name == "torch" or backend_name not in available_backends(model):
        return None
    variant = BACKEND_VARIANTS.get(backend_name)
    options = dict(device=sel.device, threads=sel.threads, store=store)
    if variant is None or cached_export(store, model.card.id, variant, verify=False) is not None:
        return make_backend(model, backend_name, **options)
    with st.status(f"Exporting {model.card.name} to ONNX ({variant}): once, then cached", expanded=True) as status:
        bar = st.progress(0.0, text="starting…")
        try:
            backend = make_backend(model, backend_name, progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m),
                                   **options)
        except WorkbenchError:
            status.update(label="Export failed", state="error")
            raise
        status.update(label=f"Exported {model.card.name} to ONNX ({variant})", state="complete", expanded=False)
    return backend


def run_stream(model_id: str, prompt, **overrides):
    """Stream a generation into the page; returns the result or None after showing the error."""
    try:
        model = get_model(model_id, sel.device)
        generation = model.stream(prompt, backend=backend_for(model), **{**settings, **overrides})
        with st.container(key=f"out_{model_id}".replace(".", "_")):
            st.write_stream(generation)
        return generation.result
    except WorkbenchError as err:
        show_error(err)
        return None


if mode == "Prompt":
    prompt = st.text_area("Prompt", "Once upon a time", height=120, key="gen_prompt")
    if st.button("Generate", type="primary", key="gen_go"):
        result = run_stream(sel.model_id, prompt)
        if result is not None:
            st.session_state[Keys.last_generation] = result
    last = st.session_state.get(Keys.last_generation)
    if last is not None and last.model == sel.model_id and not last.config.chat:
        show_metrics(last)
        show_tokens(last, "gen")
        explain(last)

elif mode == "Chat":
    if not card.can("chat"):
        st.warning(f"{card.name} is a base model without a chat template: use Prompt mode, or pick an instruct model.")
        st.stop()
    history = st.session_state.setdefault(Keys.chat, [])
    system = st.text_input("System prompt (optional)", "", key="gen_system")
    if st.button("Clear chat", key="gen_clear"):
        history.clear()
    for message in history:
        with st.chat_message(message["role"]):
            st.text(message["content"])
    text = st.chat_input("Message the model", key="gen_chat_input")
    if text:
        history.append({"role": "user", "content": text})
        with st.chat_message("user"):
            st.text(text)
        with st.chat_message("assistant"):
            result = run_stream(sel.model_id, list(history), chat=True, system_prompt=system)
        if result is None:
            history.pop()
        else:
            history.append({"role": "assistant", "content": result.text})
            st.session_state[Keys.last_generation] = result
            show_metrics(result)
            show_tokens(result, "chat")

else:
    installed = [e.card.id for e in store.list() if e.status == INSTALLED and e.card.can("generate")]
    others = [i for i in installed if i != sel.model_id] or installed
    other = st.selectbox("Compare with", others, key="gen_other", format_func=lambda i: store.card(i).name)
    prompt = st.text_area("Prompt", "The capital of France is", height=100, key="gen_sbs_prompt")
    chat = st.toggle("Use chat templates where the model has one", value=False, key="gen_sbs_chat")
    if st.button("Generate with both", type="primary", key="gen_sbs_go"):
        results = {}
        cols = st.columns(2)
        for col, model_id in zip(cols, [sel.model_id, other]):
            with col:
                st.subheader(store.card(model_id).name)
                use_chat = chat and store.card(model_id).can("chat")
                results[model_id] = run_stream(model_id, prompt, chat=use_chat)
        for col, (model_id, result) in zip(cols, results.items()):
            if result is not None:
                with col:
                    show_metrics(result, compact=True)
                    show_tokens(result, f"sbs_{model_id}")
