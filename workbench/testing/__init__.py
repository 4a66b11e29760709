"""What the tests, benchmarks and scripts share (not used by the app): tiny models built from a
config (``tiny_models``), stores holding them (``stores``), tiny ONNX exports made once per
process (``exports``), and driving the app in headless Chromium (``browser``, needs the ``dev``
extra). ``ROOT`` is the source checkout this package runs from (the app and tests live there)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
