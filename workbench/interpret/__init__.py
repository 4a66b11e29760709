"""Inside the model: architecture, logit lens, token attribution and base-vs-tuned comparison.

One module per view, each returning data (dataclasses of numpy arrays) that Streamlit, Jupyter and
the CLI all draw the same way; ``workbench.views.interpret`` builds the plotly figures and HTML. Nothing here imports
streamlit.

- ``parts``: where a Llama / Gemma 3 / GPT-2 model keeps its embedding, final norm and LM head,
  and the input checks shared by the views (capability, empty text, token caps).
- ``architecture``: blocks, shapes and parameter counts from the loaded config and weights.
- ``lens``: the logit lens (each layer's residual stream through the final norm and unembedding).
- ``attribution``: gradient × input, integrated gradients, occlusion.
- ``compare``: two models that share a tokenizer, on one prompt.
"""
