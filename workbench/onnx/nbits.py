"""Rewrite an fp32 ONNX graph so its weights are the GGUF's own blocks: each ``MatMul`` (or
``FusedMatMul`` with ``transB``) whose weight is a constant becomes ONNX Runtime's
``MatMulNBits``, and the embedding ``Gather`` becomes ``GatherBlockQuantized``.

Weights are matched **by value**, not by name: every row of a graph weight (one output unit)
must equal, bit for bit, a row of a GGUF tensor de-quantized to fp32. That finds the tensor
whatever the exporter called it, follows the row permutation transformers applies to Llama's
q/k projections, and finds packed weights (q/k/v or gate/up concatenated by the fusions) as
runs of rows of several tensors. A weight with a row that matches nothing stays fp32 and is
listed.

How a block type becomes ``MatMulNBits`` (see ``gguf_blocks``): 4-bit codes go in as they are
with their zero point (left out when every block's is the op's default, 8, as for Q4_0 and the
centred Q4_1 / Q4_K: ONNX Runtime's kernels without zero points are faster,
docs/measurements/matmulnbits-kernels-cpu.txt); 5-, 6-
and 8-bit codes go in as 8-bit codes where activations are int8 (``accuracy_level`` 4), and where
they are fp32 as two 4-bit halves laid side by side along K, the input fed twice
(``Concat(x, x)``; ONNX Runtime's 8-bit kernel with fp32 activations is far slower than two 4-bit
calls), or left in fp32, de-quantized, where the export measured that faster on this machine
(``wide_as_fp32``, ``kernels.wide_codes_timing``); per-block offsets (Q4_1, Q5_1, Q4_K) as a
correction ``(x @ S) @ offsetsᵀ`` where ``S`` sums each block of x. All exact: the graph computes
with the GGUF's weights, only the order of the float additions differs. ``accuracy_level`` 0
keeps activations fp32; 4 quantizes them to int8 per block, as llama.cpp's dot products do.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .gguf_blocks import BlockTensor, split_nibbles
from .graph_tools import drop_unused, producers

MS_DOMAIN = "com.microsoft"


@dataclass
class Replaced:
    """What became of one weight of the graph."""

    node: str
    op: str
    shape: tuple[int, int]  # (N, K) as torch stores it
    tensors: list[str]  # GGUF tensors it is made of, in order
    gguf_types: list[str]
    form: str  # "MatMulNBits 4-bit (8-bit as 2 x 4-bit)", "fp32 (no GGUF match)", ...
    bytes_before: int
    bytes_after: int


@dataclass
class RewriteReport:
    weights: list[Replaced] = field(default_factory=list)
    unused_gguf: list[str] = field(default_factory=list)
    accuracy_level: int = 0
    kernel_choices: dict[str, dict] = field(default_factory=dict)  # "NxK" -> wide_codes_timing's answer

    def fp32_left(self) -> list[Replaced]:
        return [w for w in self.weights if w.form.startswith("fp32")]

    def table(self) -> list[dict]:
        """GGUF type -> ONNX form, with counts and bytes (the closing note's mapping table)."""
        rows: dict[tuple[str, str], dict] = {}
        for w in self.weights:
            key = ("+".join(sorted(set(w.gguf_types))) or "-", w.form)
            row = rows.setdefault(key, {"gguf_type": key[0], "onnx_form": key[1], "weights": 0,
                                        "bytes_fp32": 0, "bytes_now": 0})
            row["weights"] += 1
            row["bytes_fp32"] += w.bytes_before
            row["bytes_now"] += w.bytes_after
        return list(rows.values())

    def to_json(self) -> dict:
        return {"accuracy_level": self.accuracy_level, "mapping": self.table(),
                "fp32_left": [w.node for w in self.fp32_left()], "unused_gguf": self.unused_gguf,
                "kernel_choices": self.kernel_choices}


class RowIndex:
    """Every row of every GGUF tensor, de-quantized to fp32, findable by its bytes."""

    def __init__(self, tensors: dict[str, BlockTensor]):
        self.tensors = tensors
        self.widths = {t.shape[1] for t in tensors.values()}
        self.rows32: dict[str, np.ndarray] = {}
        self._index: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
        for name, t in tensors.items():
            # the rows transformers saved: gguf's own fp32 de-quantization, kept by read_gguf
            w = t.reference if t.reference is not None else t.dequantized().astype(np.float32)
            self.rows32[name] = w
            cols = w.shape[1]
            for i, row in enumerate(w):
                self._index[(cols, hash(row.tobytes()))].append((name, i))

    def match(self, weight: np.ndarray) -> list[tuple[str, np.ndarray]] | None:
        """``weight`` (N, K) as runs of GGUF rows ``[(tensor, row indices), ...]``, or None."""
        runs: list[tuple[str, list[int]]] = []
        cols = weight.shape[1]
        for row in weight:
            data = row.tobytes()
            found = [(n, i) for n, i in self._index.get((cols, hash(data)), ())
                     if self.rows32[n][i].tobytes() == data]
            if not found:
                return None
            current = runs[-1][0] if runs and len(runs[-1][1]) < self.tensors[runs[-1][0]].shape[0] else None
            same = [(n, i) for n, i in found if n == current]
            name, i = (same or found)[0]
            if name == current:
                runs[-1][1].append(i)
            else:
                runs.append((name, [i]))
        return [(name, np.asarray(rows)) for name, rows in runs]


def _pack4(q: np.ndarray) -> np.ndarray:
    """(N, blocks, block) codes 0..15 -> (N, blocks, block/2) bytes, element 2i in the low nibble."""
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _pack_zero_points(zp: np.ndarray) -> np.ndarray:
    """(N, blocks) zero points 0..15 -> (N, ceil(blocks/2)) bytes, block 2i in the low nibble."""
    n, b = zp.shape
    if b % 2:
        zp = np.concatenate([zp, np.zeros((n, 1), zp.dtype)], axis=1)
    return (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)


@dataclass
class _Half:
    """One side of the weight matrix, all 4-bit: codes (N, K'), scales/zero points (N, K'/block)."""

    q: np.ndarray
    scale: np.ndarray
    zp: np.ndarray


def _nbits_parts(pieces: list[BlockTensor]) -> tuple[_Half, np.ndarray | None, bool]:
    """The pieces (runs of rows, concatenated along N) as one 4-bit matrix: (codes etc., offsets
    (N, K/block) or None, whether K is doubled because some piece was split into two halves)."""
    pieces = [p.centered() for p in pieces]
    split = any(p.bits > 4 for p in pieces)
    qs, scales, zps = [], [], []
    for p in pieces:
        halves = split_nibbles(p)
        if split and len(halves) == 1:  # a 4-bit piece beside split ones: its high half is zero
            lo = halves[0]
            halves = [BlockTensor(lo.name, lo.gguf_type, np.zeros_like(lo.q), lo.scale, None, lo.block, 4, 0), lo]
        qs.append(np.concatenate([h.q for h in halves], axis=1))
        scales.append(np.concatenate([h.scale for h in halves], axis=1))
        zps.append(np.concatenate([np.full(h.scale.shape, h.zero_point, np.uint8) for h in halves], axis=1))
    half = _Half(np.concatenate(qs), np.concatenate(scales).astype(np.float32), np.concatenate(zps))
    return half, _stacked_offsets(pieces), split


def _stacked_offsets(pieces: list[BlockTensor]) -> np.ndarray | None:
    """The pieces' block offsets stacked along N (zeros for a piece without), or None if none has any."""
    if not any(p.offset is not None for p in pieces):
        return None
    return np.concatenate([p.offset if p.offset is not None else np.zeros(p.scale.shape, np.float32)
                           for p in pieces]).astype(np.float32)


class _Graph:
    """Small helpers to add nodes and initializers to an onnx GraphProto."""

    def __init__(self, graph):
        self.graph = graph
        self.new_inits: list = []
        self.counter = Counter()

    def name(self, stem: str) -> str:
        self.counter[stem] += 1
        return f"{stem}_{self.counter[stem]}"

    def block_sums(self, k: int, block: int) -> str:
        """The (K, K/block) 0/1 matrix that sums each block of a row, one per shape."""
        key = f"block_sums_{k}x{block}"
        if key not in self.counter:
            self.counter[key] += 1
            self.const_named(key, np.kron(np.eye(k // block, dtype=np.float32), np.ones((block, 1), np.float32)))
        return key

    def const_named(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, stem: str, array: np.ndarray) -> str:
        return self.const_named(self.name(stem), array)


def _eight_bit_parts(pieces: list[BlockTensor]) -> tuple[_Half, np.ndarray | None]:
    """The pieces as one matrix of byte codes (any width up to 8 bits, each with its own zero
    point), and the offsets (N, K/block) or None."""
    pieces = [p.centered() for p in pieces]
    half = _Half(np.concatenate([p.q for p in pieces]).astype(np.uint8),
                 np.concatenate([p.scale for p in pieces]).astype(np.float32),
                 np.concatenate([np.full(p.scale.shape, p.zero_point, np.uint8) for p in pieces]))
    return half, _stacked_offsets(pieces)


def eight_bit_form(pieces: list[BlockTensor], accuracy: int) -> bool:
    """Whether a weight goes in as 8-bit codes rather than 4-bit (halves): only with int8
    activations, where ONNX Runtime's 8-bit kernel is faster than two 4-bit halves; with fp32
    activations its 8-bit kernel is far slower than fp32 (benchmarks/matmulnbits_kernels.py, its
    output in docs/measurements/matmulnbits-kernels-cpu.txt)."""
    return accuracy == 4 and any(p.bits > 4 for p in pieces)


def _matmul_nbits_nodes(g: _Graph, x: str, y: str, pieces: list[BlockTensor], accuracy: int) -> tuple[list, int]:
    """Nodes computing ``y = x @ Wᵀ`` for W made of ``pieces``; and the bytes of their constants."""
    from onnx import helper

    block = pieces[0].block
    nodes = []
    stem = g.name("gguf_matmul")
    a = x
    if eight_bit_form(pieces, accuracy):
        bits, split = 8, False
        half, offsets = _eight_bit_parts(pieces)
        n, k2 = half.q.shape
        codes = np.ascontiguousarray(half.q.reshape(n, k2 // block, block))
        zero_points = half.zp  # (N, blocks), a byte each
    else:
        bits = 4
        half, offsets, split = _nbits_parts(pieces)
        n, k2 = half.q.shape
        if split:
            a = f"{stem}/x2"
            nodes.append(helper.make_node("Concat", [x, x], [a], name=f"{stem}/concat", axis=-1))
        codes = _pack4(half.q.reshape(n, k2 // block, block))
        zero_points = _pack_zero_points(half.zp)
    b = g.const(f"{stem}/B", codes)
    s = g.const(f"{stem}/scales", half.scale)
    inputs, size = [a, b, s], codes.nbytes + half.scale.nbytes
    if not (half.zp == 2 ** (bits - 1)).all():  # the op's default; the kernels without zero points are faster
        inputs.append(g.const(f"{stem}/zero_points", zero_points))
        size += zero_points.nbytes
    main = f"{stem}/nbits" if offsets is not None else y
    nodes.append(helper.make_node("MatMulNBits", inputs, [main], name=stem, domain=MS_DOMAIN,
                                  K=k2, N=n, bits=bits, block_size=block, accuracy_level=accuracy))
    if offsets is not None:
        k = k2 // 2 if split else k2
        sm = g.block_sums(k, block)
        off = g.const(f"{stem}/offsets", np.ascontiguousarray(offsets.T))  # (K/block, N)
        nodes += [
            helper.make_node("MatMul", [x, sm], [f"{stem}/x_sums"], name=f"{stem}/sum"),
            helper.make_node("MatMul", [f"{stem}/x_sums", off], [f"{stem}/correction"], name=f"{stem}/offset"),
            helper.make_node("Add", [main, f"{stem}/correction"], [y], name=f"{stem}/add"),
        ]
        size += offsets.nbytes
    return nodes, size


def _gather_nodes(g: _Graph, ids: str, y: str, t: BlockTensor) -> tuple[list, int] | None:
    """``GatherBlockQuantized`` for an embedding whose blocks have no offset, else None."""
    from onnx import helper

    if t.offset is not None:
        return None
    n, k = t.q.shape
    stem = g.name("gguf_gather")
    if t.bits == 4:
        data = _pack4(t.q.reshape(n, k // 2, 2)).reshape(n, k // 2)
        zp = _pack_zero_points(np.full(t.scale.shape, t.zero_point, np.uint8))
    else:  # 5-8 bits fit a byte as they are
        data, zp = t.q, np.full(t.scale.shape, t.zero_point, np.uint8)
    d, s, z = g.const(f"{stem}/data", data), g.const(f"{stem}/scales", t.scale), g.const(f"{stem}/zero_points", zp)
    node = helper.make_node("GatherBlockQuantized", [d, ids, s, z], [y], name=stem, domain=MS_DOMAIN,
                            bits=4 if t.bits == 4 else 8, block_size=t.block, gather_axis=0, quantize_axis=1)
    return [node], data.nbytes + t.scale.nbytes + zp.nbytes


def _weight_of(node, inits: dict, made_by: dict) -> tuple[str, np.ndarray] | None:
    """(initializer name, weight as (N, K) rows) if ``node`` multiplies by or gathers from a
    constant; a ``Gather`` from a 2-D ``Transpose`` of one (how onnxruntime-genai's builder ties
    the embedding to the LM head's weight) gathers from its transpose."""
    from onnx import numpy_helper

    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "MatMul" and node.input[1] in inits:
        b = numpy_helper.to_array(inits[node.input[1]])
        return (node.input[1], np.ascontiguousarray(b.T)) if b.ndim == 2 else None
    if node.op_type == "FusedMatMul" and node.domain == MS_DOMAIN and node.input[1] in inits:
        trans_b = attrs.get("transB")
        plain = all(attrs[a].i == 0 for a in ("transA", "transBatchA", "transBatchB") if a in attrs)
        alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
        if trans_b is not None and trans_b.i == 1 and plain and alpha == 1.0:
            b = numpy_helper.to_array(inits[node.input[1]])
            return (node.input[1], b) if b.ndim == 2 else None
    axis = attrs["axis"].i if "axis" in attrs else 0
    if node.op_type == "Gather" and axis == 0:
        if node.input[0] in inits:
            d = numpy_helper.to_array(inits[node.input[0]])
            return (node.input[0], d) if d.ndim == 2 else None
        source = made_by.get(node.input[0])
        if source is not None and source.op_type == "Transpose" and source.input[0] in inits:
            perm = [a.ints for a in source.attribute if a.name == "perm"]
            d = numpy_helper.to_array(inits[source.input[0]])
            if d.ndim == 2 and (not perm or list(perm[0]) == [1, 0]):
                return source.input[0], np.ascontiguousarray(d.T)
    return None


def rewrite(model, tensors: dict[str, BlockTensor], accuracy_level: int = 0, progress=None,
            wide_as_fp32=None) -> RewriteReport:
    """Replace, in place, every constant weight of ``model`` (an onnx ModelProto with its data
    loaded) that the GGUF ``tensors`` reproduce exactly. Returns what was done.

    ``wide_as_fp32(n, k, offsets, block) -> dict`` decides, for a weight with 5- to 8-bit codes and fp32
    activations (accuracy level 0), whether it stays fp32 (de-quantized, as exact) instead of two
    4-bit halves: ``kernels.wide_codes_timing`` measures both on this machine. Its answer
    (``{"fp32": bool, ...}``) is kept in the report. None keeps the halves."""
    graph = model.graph
    made_by = producers(graph)
    inits = {i.name: i for i in graph.initializer}
    index = RowIndex(tensors)
    g = _Graph(graph)
    report = RewriteReport(accuracy_level=accuracy_level)
    used: set[str] = set()
    new_nodes = []
    candidates = [n for n in graph.node if n.op_type in ("MatMul", "FusedMatMul", "Gather")]
    done = 0
    for node in graph.node:
        found = _weight_of(node, inits, made_by) if node.op_type in ("MatMul", "FusedMatMul", "Gather") else None
        if found is None:
            new_nodes.append(node)
            continue
        done += 1
        if progress is not None:
            progress(done / max(len(candidates), 1), f"matching weight {done} of {len(candidates)} to GGUF blocks")
        init_name, weight = found
        runs = index.match(weight)
        before = weight.nbytes
        if runs is None:
            if weight.shape[1] in index.widths:  # shaped like a model weight: worth listing
                report.weights.append(Replaced(node.name, node.op_type, weight.shape, [], [], "fp32 (no GGUF match)", before, before))
            new_nodes.append(node)
            continue
        pieces = [tensors[name].take_rows(rows) for name, rows in runs]
        names = [name for name, _ in runs]
        types = [tensors[name].gguf_type for name in names]
        blocks = {p.block for p in pieces}
        form = ""
        if node.op_type == "Gather":
            out = _gather_nodes(g, node.input[1], node.output[0], pieces[0]) if len(pieces) == 1 else None
            form = "GatherBlockQuantized 8-bit" if pieces[0].bits > 4 else "GatherBlockQuantized 4-bit"
        elif len(blocks) == 1 and (choice := _wide_choice(wide_as_fp32, weight.shape, pieces, accuracy_level, report)):
            why = choice.get("chosen_by") or f"fp32 MatMul {choice['fp32_ms']} ms vs two 4-bit halves {choice['halves_ms']} ms, measured"
            out, form = None, f"fp32 (5-8-bit codes; {why})"
            used.update(names)  # matched, and kept in fp32 on purpose
        elif len(blocks) == 1:
            out = _matmul_nbits_nodes(g, node.input[0], node.output[0], pieces, accuracy_level)
            if eight_bit_form(pieces, accuracy_level):
                parts = ["8-bit"]
            else:
                parts = ["4-bit"] + (["5-8-bit as 2 x 4-bit"] if any(p.bits > 4 for p in pieces) else [])
            parts += ["+ block offsets"] if any(p.offset is not None for p in pieces) else []
            form = f"MatMulNBits {' '.join(parts)}, block {pieces[0].block}"
        else:
            out = None
        if out is None:
            if not form.startswith("fp32"):
                form = "fp32 (blocks have offsets)" if node.op_type == "Gather" else "fp32 (mixed block sizes)"
            report.weights.append(Replaced(node.name, node.op_type, weight.shape, names, types, form, before, before))
            new_nodes.append(node)
            continue
        nodes, size = out
        new_nodes.extend(nodes)
        used.update(names)
        report.weights.append(Replaced(node.name, node.op_type, weight.shape, names, types, form, before, size))
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(g.new_inits)
    drop_unused(graph)  # the replaced weights, and a Transpose only the old Gather read
    if not any(op.domain == MS_DOMAIN for op in model.opset_import):
        from onnx import helper

        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    report.unused_gguf = sorted(set(tensors) - used)
    return report


def _wide_choice(wide_as_fp32, shape, pieces: list[BlockTensor], accuracy: int, report: RewriteReport) -> dict | None:
    """The measured answer when a weight with wide codes and fp32 activations should stay fp32,
    else None (each shape measured once, answers kept in ``report.kernel_choices``)."""
    if wide_as_fp32 is None or eight_bit_form(pieces, accuracy) or not any(p.bits > 4 for p in pieces):
        return None
    n, k = shape
    offsets = any(p.offset is not None for p in pieces)
    block = pieces[0].block
    key = f"{n}x{k}, block {block}" + (" + offsets" if offsets else "")
    if key not in report.kernel_choices:
        report.kernel_choices[key] = wide_as_fp32(n, k, offsets, block)
    choice = report.kernel_choices[key]
    return choice if choice["fp32"] else None
