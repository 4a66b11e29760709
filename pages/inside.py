"""Inside page: the model's architecture, what each layer predicts (logit lens), which input tokens
drove a prediction (attribution), and a model against its fine-tune.

Layout only: the numbers come from ``workbench.interpret``, the figures from
``workbench.views.interpret``."""
import streamlit as st

from pages._shared import Keys, get_model, get_store, show_error, sidebar
from workbench.errors import WorkbenchError
from workbench.interpret import architecture, attribution, compare, lens
from workbench.store import INSTALLED
from workbench.views import interpret as views

DEFAULT_TEXT = "The capital of France is"
TABS = ["Architecture", "Logit lens", "Attribution", "Base vs tuned"]
# this page's own state
TAB, LENS, ATTR, CMP = "ins_tab", "ins_lens", "ins_attr", "ins_cmp"

sel = sidebar("attention")
st.title("Inside the model")
st.caption("How the model is built, what each layer would predict, which tokens drove a prediction, "
           "and what fine-tuning changed.")
if sel.model_id is None:
    st.stop()


def model(model_id=None):
    return get_model(model_id or sel.model_id, sel.device, "eager")


def run(key, build):
    """Run ``build`` and keep its result under ``key``; a WorkbenchError is shown, not raised."""
    try:
        st.session_state[key] = build()
    except WorkbenchError as err:
        st.session_state.pop(key, None)
        show_error(err)


def current(key):
    result = st.session_state.get(key)
    owner = getattr(result, "model", None) or getattr(result, "base", None)
    return result if owner == sel.model_id else None


handed = st.session_state.get(Keys.app_answer)  # an app's answer, from the Apps page (views.apps.handoff)
if handed and handed.pop("open", None) == "inside":  # opened from an answer: its exact prompt is the text
    st.session_state.pop("ins_text", None)
    first = handed["prompt"]
else:
    first = DEFAULT_TEXT
text = st.text_area("Text", first, height=90, key="ins_text",
                    help="The views explain the token the model predicts after this text.")
if handed and text == handed["prompt"]:
    from workbench.views.apps import md

    cited = "; ".join(f"{c['file']} › {c['heading']}" for c in handed["citations"]) or "none"
    st.caption(f"The exact prompt app {handed['app']} sent ({handed['model']}; cited passages inside it: {md(cited)}). "
               f"The model's next token here is the first of its answer, which went on: “{md(handed['answer'][:200])}”. "
               "Add the answer's first words to the text to follow a later token.")

tab_arch, tab_lens, tab_attr, tab_cmp = st.tabs(TABS, key=TAB, on_change="rerun")

with tab_arch:
    if tab_arch.open:
        try:
            arch = architecture.architecture(model())
        except WorkbenchError as err:
            show_error(err)
        else:
            st.caption(f"Read from {arch.model}'s config and weights: {arch.counted:,} parameters counted "
                       f"(model.num_parameters() = {arch.num_parameters:,}; a tied LM head counts once).")
            with st.container(key="ins_arch_diagram"):
                st.plotly_chart(views.architecture_diagram(arch), key="ins_arch_fig")
            with st.container(key="ins_arch_treemap"):
                st.plotly_chart(views.parameter_treemap(arch), key="ins_arch_tree")
            sizes = arch.variant_bytes()
            cols = st.columns(len(sizes))
            for col, (variant, size) in zip(cols, sizes.items()):
                on_disk = arch.exports.get(variant)
                col.metric(f"{variant} weights", f"{size / 2**20:.1f} MB",
                           help="fp32 / fused: 4 B per parameter. int8: projection weights and the LM head at "
                           "1 B per parameter, embedding table and norms at 4 B.",
                           delta=f"{on_disk / 2**20:.1f} MB exported" if on_disk else None, delta_color="off")
            st.dataframe(arch.by_group(), hide_index=True, key="ins_arch_groups")
            with st.expander("Every tensor"):
                st.dataframe(arch.frame(), hide_index=True, key="ins_arch_tensors")

with tab_lens:
    if tab_lens.open:
        c1, c2 = st.columns([1, 2])
        top_k = c1.number_input("Top-k", 1, 20, 5, key="ins_lens_k")
        target = c2.text_input("Follow this token (one token, mind the leading space)", "", key="ins_lens_target",
                               help="Empty: the model's own next token after the text.")
        if st.button("Run the lens", type="primary", key="ins_lens_go"):
            with st.spinner("Reading every layer…"):
                run(LENS, lambda: lens.logit_lens(model(), text, top_k=int(top_k), target=target or None,
                                                  max_positions=views.LENS_MAX_COLUMNS))
        with st.expander("What the logit lens assumes", key="ins_lens_note"):
            st.markdown(
                "Every layer adds its output to one running vector per token, the **residual stream**. "
                "After the last layer the model applies its **final norm** and the **unembedding** (the LM "
                "head) to get next-token logits. The logit lens applies that same final norm and unembedding "
                "to the stream *after every layer*, as if the model stopped there.\n\n"
                "It **assumes** the middle layers already write in the same basis the output reads — nothing "
                "trains them to. Early layers often look like noise through the lens even when they carry "
                "the information in another form (a *tuned lens* learns a translation per layer instead). "
                "The last row is not an assumption: it is the model's real next-token distribution "
                "(transformers' last hidden state already has the final norm applied, so it is not "
                "normed twice; Gemma's logit softcapping is applied like the model does).")
        result = current(LENS)
        if result is not None:
            if result.note:
                st.warning(result.note)
            first = int(result.first_top1()[-1])
            st.caption(f"Forward {result.forward_ms:.0f} ms, lens {result.lens_ms:.0f} ms. The final answer "
                       f"'{result.label(result.final_ids[-1])}' is the top token from layer {first} of "
                       f"{result.num_layers} on.")
            with st.container(key="ins_lens_map"):
                st.plotly_chart(views.lens_heatmap(result), key="ins_lens_fig")
            with st.container(key="ins_lens_target_view"):
                st.plotly_chart(views.target_figure(result), key="ins_lens_target_fig")

with tab_attr:
    if tab_attr.open:
        c1, c2, c3 = st.columns([2, 1, 1])
        a_target = c1.text_input("Explain this next token (empty: the predicted one)", "", key="ins_attr_target")
        steps = c2.number_input("Integration steps (at most)", 1, 512, attribution.DEFAULT_STEPS,
                                key="ins_attr_steps",
                                help="Intervals of the path. The grid is refined where the path bends and "
                                "stops early once the completeness error is within 1 %.")
        baseline = c3.selectbox("Baseline", attribution.BASELINES, key="ins_attr_baseline",
                                help="pad: the pad (or end-of-text) token at every position; mean: the average "
                                "token embedding; zero: all-zero embeddings. The first token stays as it is in "
                                "all three.")
        if st.button("Attribute", type="primary", key="ins_attr_go"):
            with st.spinner("Gradients, integrated gradients and occlusion…"):
                run(ATTR, lambda: attribution.attribute(model(), text, target=a_target or None, steps=int(steps),
                                                        baseline=baseline))
        with st.expander("Why integrated gradients need a baseline, and what completeness means", key="ins_attr_note"):
            st.markdown(
                "**Gradient × input** multiplies each token's embedding by the gradient of the target's logit: "
                "a first-order guess of what removing the token would do, which is wrong where the model "
                "saturates (a large change can have a small gradient).\n\n"
                "**Integrated gradients** ask a definite question: *compared with what?* The **baseline** is "
                "an input that means 'nothing here'. The gradients are averaged along the straight path from "
                "the baseline to the real input and multiplied by the difference, so a token's score is its "
                "share of the change in the logit along that path.\n\n"
                "**Which baseline.** The default is the **pad token** (end-of-text for SmolLM2) at every "
                "position: a real token, so the path runs between two inputs the model has seen. **Zero** "
                "embeddings are the textbook choice but lie far from every token: next to them the norms "
                "divide by almost nothing, the logit jumps, and on SmolLM2 even 64 steps miss the total by "
                "70 % to 600 %. The scores answer a different question for each baseline — "
                "compare them, and read the completeness error before trusting one.\n\n"
                "**Completeness:** the scores add up to f(input) − f(baseline). The integral is a finite sum, "
                "so it misses by the **completeness error** shown below. The logit along the path is not "
                "smooth (the chart under the scores draws it): with 64 equal steps the sum still missed by "
                "5 % to 18 % on SmolLM2 prompts of 16 to 57 tokens. The workbench therefore computes f at "
                "every point too — from the same "
                "forward pass as the gradients — which tells exactly how much each interval misses, and splits "
                "the worst intervals until the error is within 1 %, the steps run out, or the 30 s budget is "
                "spent (trapezoid rule on an adaptive grid): 0.4 % to 8.5 % on the same prompts at 64 steps, "
                "2 % at 128 on the longest. When the error stays above 5 % a warning says so.\n\n"
                "The first token is kept in the baseline (it is where attention parks; changing it makes the "
                "output jump), so its score is 0.\n\n"
                "**Occlusion** replaces a token by the baseline and measures the drop directly — no "
                "gradients, one forward pass per token.")
        result = current(ATTR)
        if result is not None:
            for note in result.notes:
                st.warning(note)
            method = st.segmented_control("Colour by", list(attribution.METHODS), default="integrated",
                                          format_func=attribution.METHODS.get, key="ins_attr_method") or "integrated"
            with st.container(key="ins_attr_tokens"):
                st.html(views.attribution_html(result, method))
            m1, m2, m3 = st.columns(3)
            m1.metric("Target", f"{result.target_token}", f"p = {result.target_prob:.1%}", delta_color="off")
            why = {"tolerance": f"error within {attribution.TOLERANCE:.0%}", "steps": "all steps used",
                   "time": "time budget"}.get(result.stop)
            m2.metric("IG steps", f"{result.steps} of {result.steps_asked}", why, delta_color="off")
            m3.metric("Completeness error", f"{result.completeness_error:.3g} logit",
                      f"{result.completeness_relative:.2%} of f(x) − f(baseline)", delta_color="off")
            with st.container(key="ins_attr_chart"):
                st.plotly_chart(views.attribution_figure(result), key="ins_attr_fig")
            with st.container(key="ins_attr_path"):
                st.plotly_chart(views.path_figure(result), key="ins_attr_path_fig")

with tab_cmp:
    if tab_cmp.open:
        store = get_store()
        others = [e.card.id for e in store.list()
                  if e.status == INSTALLED and e.card.can("attention") and e.card.id != sel.model_id]
        if not others:
            st.info("Install or add a second model (a fine-tune of this one) to compare with.")
        else:
            tuned_id = st.selectbox("Tuned model", others, key="ins_cmp_tuned",
                                    format_func=lambda i: store.card(i).name,
                                    help="It must share the tokenizer of the model in the sidebar.")
            if st.button("Compare", type="primary", key="ins_cmp_go"):
                with st.spinner("Running both models…"):
                    run(CMP, lambda: compare.compare(model(), model(tuned_id), text, max_positions=views.LENS_MAX_COLUMNS))
            c = current(CMP)
            if c is not None:
                if c.note:
                    st.warning(c.note)
                with st.container(key="ins_cmp_changes"):
                    st.plotly_chart(views.changes_figure(c), key="ins_cmp_changes_fig")
                left, right = st.columns(2)
                with left:
                    st.plotly_chart(views.lens_heatmap(c.base_lens), key="ins_cmp_lens_base")
                with right:
                    st.plotly_chart(views.lens_heatmap(c.tuned_lens), key="ins_cmp_lens_tuned")
                if c.lens_kl.size:
                    with st.container(key="ins_cmp_diff"):
                        st.plotly_chart(views.lens_difference(c), key="ins_cmp_diff_fig")
                if c.head_change is not None:
                    with st.container(key="ins_cmp_heads"):
                        st.plotly_chart(views.head_change_figure(c), key="ins_cmp_heads_fig")
