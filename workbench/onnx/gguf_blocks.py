"""A GGUF file's quantized tensors as the integer codes, scales and offsets ONNX Runtime's
block-quantized ops take, with nothing re-quantized.

Every supported GGUF block type is affine per block of 16 or 32 weights along a row::

    w = scale * (q - zero_point) + offset

with an integer code ``q``, an integer zero point that is the same for the whole tensor, an exact
fp32 ``scale`` and (for the types with a minimum) an exact fp32 ``offset``:

=========  =====  ======  ==========  ============  ==========================
GGUF type  block  q bits  zero point  scale         offset
=========  =====  ======  ==========  ============  ==========================
Q4_0       32     4       8           d             --
Q4_1       32     4       0           d             m
Q5_0       32     5       16          d             --
Q5_1       32     5       0           d             m
Q8_0       32     8       128         d             -- (int8 codes, shifted)
Q4_K       32     4       0           d * sc_j      -dmin * m_j (8 per 256)
Q6_K       16     6       32          d * sc_j      -- (16 per 256)
=========  =====  ======  ==========  ============  ==========================

``split_nibbles`` writes codes of more than 4 bits as two 4-bit codes (``q = 16 * hi + lo``), which
is how the graph keeps 5-, 6- and 8-bit weights exact on ONNX Runtime's fast 4-bit kernels. Each
parse is checked against gguf's own de-quantization (``gguf.quants.dequantize``, the code
transformers uses to make the store's fp32 weights) before it is used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ExportError

# name -> (weights per block of the ONNX form, bits of q, zero point)
FORMS = {
    "Q4_0": (32, 4, 8), "Q4_1": (32, 4, 0), "Q5_0": (32, 5, 16), "Q5_1": (32, 5, 0),
    "Q8_0": (32, 8, 128), "Q4_K": (32, 4, 0), "Q6_K": (16, 6, 32),
}


@dataclass
class BlockTensor:
    """One GGUF matrix as ``w[n, k] = scale[n, k // block] * (q[n, k] - zero_point) + offset[...]``."""

    name: str
    gguf_type: str
    q: np.ndarray  # (N, K) uint8 codes
    scale: np.ndarray  # (N, K // block) float32
    offset: np.ndarray | None  # (N, K // block) float32, or None where the type has no minimum
    block: int
    bits: int
    zero_point: int
    reference: np.ndarray | None = None  # gguf's own fp32 de-quantization (what the store's weights are)

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    def dequantized(self) -> np.ndarray:
        """The weights in float64 (exact: every factor is exact in fp32)."""
        n, k = self.q.shape
        w = (self.q.astype(np.float64) - self.zero_point).reshape(n, k // self.block, self.block)
        w = w * self.scale.astype(np.float64)[..., None]
        if self.offset is not None:
            w = w + self.offset.astype(np.float64)[..., None]
        return w.reshape(n, k)

    def centered(self) -> "BlockTensor":
        """For a 4-bit type with offsets, the same weights as ``scale * (q - 8) + (offset + 8 *
        scale)``: both parts then stay near the weight's own size instead of cancelling, which
        keeps float rounding in the dot products as small as a plain fp32 product's. Returned
        only where every new offset is exact in fp32; otherwise ``self``."""
        if self.offset is None or self.bits != 4 or self.zero_point != 0:
            return self
        offset = self.offset.astype(np.float64) + 8 * self.scale.astype(np.float64)
        offset32 = offset.astype(np.float32)
        if not np.array_equal(offset32.astype(np.float64), offset):
            return self
        return BlockTensor(self.name, self.gguf_type, self.q, self.scale, offset32, self.block, 4, 8)

    def take_rows(self, rows: np.ndarray) -> "BlockTensor":
        """The same tensor with its rows reordered (or a subset of them)."""
        return BlockTensor(self.name, self.gguf_type, self.q[rows], self.scale[rows],
                           None if self.offset is None else self.offset[rows],
                           self.block, self.bits, self.zero_point)


def _f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16).astype(np.float32)[..., 0]


def _nibbles(qs: np.ndarray, group: int) -> np.ndarray:
    """ggml's nibble order: in each run of ``group`` bytes, low nibbles first, then high ones."""
    n = qs.shape[0]
    qs = qs.reshape(n, -1, 1, group) >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)
    return (qs & np.uint8(0x0F)).reshape(n, -1)


def _parse_blocks(kind: str, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(codes per weight, scale per ONNX block, offset per ONNX block) of ``blocks`` (B, bytes)."""
    n = blocks.shape[0]
    if kind in ("Q4_0", "Q4_1"):
        d = _f16(blocks[:, 0:2])
        m = _f16(blocks[:, 2:4]) if kind == "Q4_1" else None
        qs = blocks[:, 4:] if kind == "Q4_1" else blocks[:, 2:]
        return _nibbles(qs, 16), d[:, None], None if m is None else m[:, None]
    if kind in ("Q5_0", "Q5_1"):
        d = _f16(blocks[:, 0:2])
        m = _f16(blocks[:, 2:4]) if kind == "Q5_1" else None
        start = 4 if kind == "Q5_1" else 2
        qh = np.ascontiguousarray(blocks[:, start:start + 4]).view(np.uint32)
        high = ((qh >> np.arange(32, dtype=np.uint32)[None]) & np.uint32(1)).astype(np.uint8)
        q = _nibbles(blocks[:, start + 4:], 16) | (high << np.uint8(4))
        return q, d[:, None], None if m is None else m[:, None]
    if kind == "Q8_0":
        d = _f16(blocks[:, 0:2])
        q = (blocks[:, 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return q, d[:, None], None
    if kind == "Q4_K":
        import gguf.quants

        d, dmin = _f16(blocks[:, 0:2]), _f16(blocks[:, 2:4])
        sc, m = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16])
        scale = d[:, None] * sc.reshape(n, 8).astype(np.float32)
        offset = -(dmin[:, None] * m.reshape(n, 8).astype(np.float32))
        return _nibbles(blocks[:, 16:], 32), scale, offset
    if kind == "Q6_K":
        ql = _nibbles(blocks[:, :128], 64).reshape(n, -1, 32)
        qh = blocks[:, 128:192].reshape(n, -1, 1, 32) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)
        qh = (qh & np.uint8(0x03)).reshape(n, -1, 32)
        q = (ql | (qh << np.uint8(4))).reshape(n, 256)
        sc = blocks[:, 192:208].view(np.int8).astype(np.float32)
        d = _f16(blocks[:, 208:210])
        return q, d[:, None] * sc, None
    raise KeyError(kind)


def parse_tensor(name: str, kind: str, raw: np.ndarray, rows: int, cols: int) -> BlockTensor:
    """Parse the raw bytes of one GGUF matrix (``rows`` x ``cols`` weights, rows of ``cols``)."""
    import gguf

    block_weights, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[kind]]
    blocks = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, block_bytes)
    q, scale, offset = _parse_blocks(kind, blocks)
    onnx_block, bits, zp = FORMS[kind]
    per_row = cols // onnx_block
    return BlockTensor(
        name, kind, q.reshape(rows, cols), scale.reshape(rows, per_row).astype(np.float32),
        None if offset is None else offset.reshape(rows, per_row).astype(np.float32),
        onnx_block, bits, zp,
    )


def check_against_gguf(t: BlockTensor, reference: np.ndarray) -> float:
    """Largest difference, in units of the fp32 spacing of the weights, between this parse and
    gguf's own de-quantization (``reference``, float32). 0 or 1: the same weights; more: a bug."""
    ours = t.dequantized()
    spacing = np.spacing(np.abs(reference).astype(np.float32)).astype(np.float64)
    return float((np.abs(ours - reference.astype(np.float64)) / spacing).max()) if ours.size else 0.0


def read_gguf(path: Path) -> tuple[dict[str, BlockTensor], dict[str, str]]:
    """Every matrix of a GGUF whose block type has an exact form (``BlockTensor`` by name), and
    the others with the reason they are left to fp32 (``{name: type}``; norms and biases, F32
    and F16 tensors, and block types without an exact form, like the IQ and Q2/Q3/Q5_K ones).
    Raises ``ExportError`` if a parse disagrees with gguf's de-quantization."""
    import gguf

    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as err:
        raise ExportError(f"{path.name} is not a readable GGUF file ({err}); the store can fetch it again "
                          "(`workbench store verify ID`, then reinstall).") from err
    mapped: dict[str, BlockTensor] = {}
    others: dict[str, str] = {}
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        dims = [int(x) for x in tensor.shape]  # ggml order: columns first
        if kind not in FORMS or len(dims) != 2:
            others[tensor.name] = kind
            continue
        cols, rows = dims
        parsed = parse_tensor(tensor.name, kind, tensor.data, rows, cols)
        reference = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(rows, cols)
        ulps = check_against_gguf(parsed, reference)
        if ulps > 1.0:
            raise ExportError(f"Reading {tensor.name} ({kind}) of {path.name} disagrees with gguf's own "
                              f"de-quantization by {ulps:.0f} fp32 steps: a bug in the block reader; report it.")
        parsed.reference = reference.astype(np.float32, copy=False)
        mapped[tensor.name] = parsed
    return mapped, others


def split_nibbles(t: BlockTensor) -> list[BlockTensor]:
    """A 5-8-bit tensor as two 4-bit tensors whose weights add up to it exactly:
    ``scale*(q - z) = 16*scale*(hi - z//16) + scale*(lo - z%16)`` with ``q = 16*hi + lo``.
    The offset, if any, stays with the low part. A 4-bit tensor is returned as it is."""
    if t.bits <= 4:
        return [t]
    hi = BlockTensor(t.name + ":hi", t.gguf_type, t.q >> 4, t.scale * np.float32(16), None,
                     t.block, 4, t.zero_point // 16)
    lo = BlockTensor(t.name + ":lo", t.gguf_type, t.q & np.uint8(0x0F), t.scale, t.offset,
                     t.block, 4, t.zero_point % 16)
    return [hi, lo]


def gguf_bytes_per_token(path: Path) -> int:
    """Bytes of weights llama.cpp reads per decoded token from a GGUF: every tensor, but the
    token embedding when a separate output matrix exists (then it only gathers one row)."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    sizes = {t.name: int(t.n_bytes) for t in reader.tensors}
    if "output.weight" in sizes:
        sizes.pop("token_embd.weight", None)
    return sum(sizes.values())
