"""Figures and HTML for people: plotly figures, HTML fragments and offline documents built from
results (numbers) the other subpackages return. Nothing here loads a model or imports torch, so
the same call draws in Streamlit, in Jupyter, or into a file.

- ``generation``: tokens coloured by probability, the probability chart, alternatives.
- ``attention``: heatmaps, summaries, attention while generating, ablation, the score breakdown.
- ``bertviz``: bertviz's head and model views as self-contained offline HTML.
- ``latency``: benchmark charts and the standalone HTML report.
"""
