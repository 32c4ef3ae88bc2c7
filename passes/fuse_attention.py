"""Fuse scaled dot-product attention, as exporters spell it out, into ONNX's `Attention`
(opset 23), so ONNX Runtime runs one kernel instead of the per-head reshapes, transposes,
two MatMuls, the mask Add and the Softmax: 6% off a MiniLM encoder's dynamic-int8 run
(6.52 -> 6.13 ms, 1 thread, interleaved; `benchmarks/RESULTS.md`). ONNX Runtime's own
transformer optimizer finds no attention in the graphs torch's dynamo exporter writes, so
without this pass every quantized transformer keeps about a dozen small ops per layer.

A match is proven, not guessed: the reshapes' target shapes are evaluated symbolically
(from the constants and `Shape` ops that compute them), and the data layout of Q, K and V
is followed through every Reshape and Transpose down to the head split. Only a region whose
layout is exactly multi-head attention is rewritten: from 3-D projections [b, s, h * d]
(the head split and merge fused too), else from per-head tensors [b, h, s, d] (packed QKV
split by Split/Squeeze, as ViT-style exports write it)."""

from __future__ import annotations

__all__ = ["FuseAttentionPass", "ATTENTION_OPSET"]

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from mpqc.passes._common import const_array, note, opset_version

#: the first opset with `Attention`
ATTENTION_OPSET = 23
#: the lowest opset this pass raises to 23 by number: opsets 22 and 23 add element types to
#: existing ops and new ops, and change no semantics, so no conversion is needed from here
_RAISABLE_FROM = 21
_LAYOUT_OPS = frozenset({"Reshape", "Transpose"})
_SCALE_OPS = frozenset({"Mul", "Div"})
#: ops that compute reshape targets from shapes
_SHAPE_OPS = frozenset({"Shape", "Slice", "Concat", "Gather", "Unsqueeze", "Squeeze", "Cast", "Constant"})


@dataclass(frozen=True)
class Size:
    """A dimension as a product: an integer times shape-inference symbols (`batch`, `seq`)."""

    coef: int
    symbols: tuple[str, ...] = ()

    def __mul__(self, other: Size) -> Size:
        return Size(self.coef * other.coef, tuple(sorted(self.symbols + other.symbols)))

    def over(self, other: Size) -> Size | None:
        """self / other when it is again a product of this kind, else None."""
        if other.coef == 0 or self.coef % other.coef:
            return None
        rest = list(self.symbols)
        for symbol in other.symbols:
            if symbol not in rest:
                return None
            rest.remove(symbol)
        return Size(self.coef // other.coef, tuple(rest))


ONE = Size(1)
#: (identity, size): one factor of a tensor's data layout
Atom = tuple[str, Size]
#: a tensor's axes, each the atoms it holds in row-major order
Layout = list[tuple[Atom, ...]]
#: an evaluated shape tensor: sizes, or Reshape's 0 (copy) and -1 (infer)
ShapeEntry = Size | str


class FuseAttentionPass(ir.passes.InPlacePass):
    """softmax(Q·Kᵀ·scale [+ bias]) · V over heads split from the last axis of 3-D Q, K, V
    projections, or over per-head [b, h, s, d] tensors (with an optional guard that zeroes
    NaN rows)  ==>  Attention(Q, K, V, bias).

    Exact on every input where each query attends to at least one key. A query whose keys
    are all masked out (a padding-only sequence) gets zeros from ONNX Runtime's kernel, as
    torch's SDPA guard gives for a -inf mask, where the unfused graph with a lowest-float
    mask averages the values. The opset is raised to 23 when something is fused (from 21
    or later; earlier opsets are left alone)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if opset_version(model) < _RAISABLE_FROM:
            return ir.passes.PassResult(model, modified=False)
        fused = 0
        for softmax in list(model.graph):
            if softmax.op_type != "Softmax" or softmax.domain != "" or softmax.graph is None:
                continue
            match = _match(softmax)
            if match is None:
                continue
            _rewrite(model.graph, match)
            fused += 1
        if fused and opset_version(model) < ATTENTION_OPSET:
            model.opset_imports[""] = ATTENTION_OPSET
            minimum = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", ATTENTION_OPSET)])
            model.ir_version = max(model.ir_version or 0, minimum)
        if fused:
            note(
                model,
                f"{fused} attention block(s) fused into ONNX Attention: the model is now opset "
                f"{ATTENTION_OPSET} and needs ONNX Runtime 1.23 or later (--backend tensorrt/qnn keep it unfused)",
            )
        return ir.passes.PassResult(model, modified=fused > 0)


@dataclass
class _Match:
    query: ir.Value
    key: ir.Value
    value: ir.Value
    bias: ir.Value | None
    heads: int
    scale: float
    output: ir.Value
    last: ir.Node
    region: list[ir.Node]
    #: 3: Q, K, V are [b, s, h * d] (the head split and merge fused too); 4: [b, h, s, d]
    rank: int = 3
    #: the mask is [b|1, h|1, 1, t]: expanded over the queries, which the kernel needs
    expand_bias: bool = False


# -- matching ------------------------------------------------------------------------------


def _match(softmax: ir.Node) -> _Match | None:
    axis = softmax.attributes.get_int("axis", -1)
    if axis not in (-1, 3):
        return None
    region: list[ir.Node] = [softmax]
    # scores: MatMul(q, k) [* or / scalars] [+ bias]
    bias: ir.Value | None = None
    scale = 1.0
    scores = softmax.inputs[0]
    node = scores.producer() if scores is not None else None
    if node is not None and node.op_type == "Add" and node.domain == "":
        for candidate, other in ((node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])):
            producer = candidate.producer() if candidate is not None else None
            if producer is not None and producer.op_type in ("MatMul", *_SCALE_OPS):
                region.append(node)
                scores, bias = candidate, other
                node = producer
                break
        else:
            return None
    while node is not None and node.op_type in _SCALE_OPS:
        step = _scalar_step(node)
        if step is None:
            return None
        factor, scores = step
        scale *= factor
        region.append(node)
        node = scores.producer() if scores is not None else None
    if node is None or node.op_type != "MatMul" or node.domain != "":
        return None
    first = node
    region.append(first)
    # probabilities: Softmax [-> Where(IsNaN(p), 0, p)] -> MatMul(p, v)
    probs = softmax.outputs[0]
    consumers = {use.node.op_type: use.node for use in probs.uses()}
    if len(probs.uses()) == 2 and set(consumers) == {"IsNaN", "Where"}:
        isnan, where = consumers["IsNaN"], consumers["Where"]
        zero = const_array(where.inputs[1])
        if (
            where.inputs[0] is not isnan.outputs[0]
            or where.inputs[2] is not probs
            or zero is None
            or zero.size != 1
            or float(zero.reshape(())) != 0.0
        ):
            return None
        region += [isnan, where]
        probs = where.outputs[0]
    uses = list(probs.uses())
    if len(uses) != 1 or uses[0].node.op_type != "MatMul" or uses[0].idx != 0:
        return None
    second = uses[0].node
    region.append(second)
    for rank in (3, 4):  # prefer fusing the head split and merge too
        found = _sides(first, second, rank)
        if found is not None:
            break
    else:
        return None
    (query, q_nodes, q_scale, q_layout), (key, k_nodes, k_scale, k_layout), (value, v_nodes, _, v_layout) = found
    sizes = {name: _axis_size(axis) for name, axis in zip("bhsd", q_layout)}
    bias_fit = None if bias is None else _bias_fit(bias, query.dtype, sizes, _axis_size(k_layout[3]))
    if bias is not None and bias_fit is None:
        return None
    if rank == 3:
        # out: MatMul(p, v) [b, h, s, dv] -> Transpose, Reshape -> [b, s, h * dv]
        out_layout: Layout = [q_layout[0], q_layout[1], q_layout[2], v_layout[3]]
        want: Layout = [q_layout[0], q_layout[2], q_layout[1] + v_layout[3]]
        tail = _follow(second.outputs[0], out_layout, want)
        if tail is None:
            return None
        output, t_nodes = tail
    else:
        output, t_nodes = second.outputs[0], []
    region += q_nodes + k_nodes + v_nodes + t_nodes
    if not _removable(region, output):
        return None
    heads = sizes["h"].coef
    last = t_nodes[-1] if t_nodes else second
    total_scale = scale * q_scale * k_scale
    region = list(dict.fromkeys(region))  # one entry per node, in order
    return _Match(query, key, value, bias, heads, total_scale, output, last, region, rank, bias_fit == "expand")


def _scalar_step(node: ir.Node) -> tuple[float, ir.Value] | None:
    """(factor, the scaled input) of a Mul or Div of `data` by a scalar constant."""
    if len(node.inputs) != 2 or node.domain != "":
        return None
    a, b = node.inputs
    for tensor, scalar in ((a, b), (b, a)) if node.op_type == "Mul" else ((a, b),):
        array = const_array(scalar)
        if tensor is not None and array is not None and array.size == 1 and const_array(tensor) is None:
            factor = float(array.reshape(()))
            if node.op_type == "Div":
                if factor == 0.0:
                    return None
                factor = 1.0 / factor
            return factor, tensor
    return None


_Side = tuple[ir.Value, list[ir.Node], float, Layout]


#: per source rank, the axes Q, K and V must end with, in atoms of the source: for 3-D
#: sources "2/0" and "2/1" are the heads and the head size split from the last axis
_ORDERS = {
    3: (("0", "2/0", "1", "2/1"), ("0", "2/0", "2/1", "1"), ("0", "2/0", "1", "2/1")),
    4: (("0", "1", "2", "3"), ("0", "1", "3", "2"), ("0", "1", "2", "3")),
}


def _sides(first: ir.Node, second: ir.Node, rank: int) -> tuple[_Side, _Side, _Side] | None:
    """Q, K and V traced back to sources of `rank` dimensions (3: projections whose last
    axis splits into the heads; 4: per-head tensors [b, h, s, d]), with the layouts
    [b, h, s, d], [b, h, d, t] and [b, h, t, dv] the MatMuls need."""
    q_order, k_order, v_order = _ORDERS[rank]
    q = _trace(first.inputs[0], "q", q_order, rank, allow_scale=True)
    k = _trace(first.inputs[1], "k", k_order, rank, allow_scale=True)
    v = _trace(second.inputs[1], "v", v_order, rank, allow_scale=False)
    if q is None or k is None or v is None:
        return None
    (_, _, _, ql), (_, _, _, kl), (_, _, _, vl) = q, k, v
    size = [[atom[1] for axis in layout for atom in axis] for layout in (ql, kl, vl)]
    (qb, qh, qs, qd), (kb, kh, kd, kt), (vb, vh, vt, _) = size
    if not (qb == kb == vb and qh == kh == vh and qd == kd and kt == vt) or qh.symbols:
        return None
    return q, k, v


def _trace(value: ir.Value | None, role: str, order: tuple[str, ...], rank: int, allow_scale: bool) -> _Side | None:
    """Walk back from `value` through Reshape, Transpose (and scalar Mul/Div) to a source
    of `rank` dimensions whose layout, followed forward, ends as one atom per axis in
    `order`."""
    chain: list[ir.Node] = []
    values: list[ir.Value] = []
    current = value
    while current is not None:
        values.append(current)
        node = current.producer()
        if node is None or node.domain != "":
            break
        if node.op_type in _LAYOUT_OPS:
            chain.append(node)
            current = node.inputs[0]
        elif node.op_type in _SCALE_OPS and allow_scale:
            step = _scalar_step(node)
            if step is None:
                break
            chain.append(node)
            current = step[1]
        else:
            break
    # try the farthest value of that rank first: the projection, not an intermediate of the reshapes
    for start in range(len(values) - 1, -1, -1):
        source = values[start]
        dims = _dims(source)
        if dims is None or len(dims) != rank:
            continue
        nodes = list(reversed(chain[:start]))
        layout = _forward([((f"{role}{i}", d),) for i, d in enumerate(dims)], nodes)
        if layout is None or len(layout) != 4 or any(len(axis) != 1 for axis in layout):
            continue
        if tuple(axis[0][0][len(role) :] for axis in layout) == order:
            factor = 1.0
            for node in nodes:
                step = _scalar_step(node) if node.op_type in _SCALE_OPS else None
                factor *= step[0] if step is not None else 1.0
            return source, nodes, factor, layout
    return None


def _follow(value: ir.Value, layout: Layout, want: Layout) -> tuple[ir.Value, list[ir.Node]] | None:
    """Forward from the attention output through single-use Reshape/Transpose nodes to the
    first value laid out as `want`."""
    nodes: list[ir.Node] = []
    current = value
    while True:
        users = [u.node for u in current.uses() if u.node.op_type != "Shape"]
        if len(users) != 1 or users[0].op_type not in _LAYOUT_OPS or users[0].inputs[0] is not current:
            return None
        node = users[0]
        moved = _forward(layout, [node])
        if moved is None:
            return None
        nodes.append(node)
        layout, current = moved, node.outputs[0]
        if layout == want:
            return current, nodes
        if len(nodes) > 4:
            return None


def _bias_fit(bias: ir.Value, dtype: ir.DataType | None, sizes: dict[str, Size], total: Size) -> str | None:
    """ "as is" for a float additive mask ONNX Runtime's kernel takes ([s, t], [h|1, s, t],
    [b|1, h|1, s, t]), "expand" for [b|1, h|1, 1, t] (HF's padding mask: the kernel does
    not broadcast the query axis, so it is expanded first), else None."""
    dims = _dims(bias)
    if dims is None or not 2 <= len(dims) <= 4 or bias.dtype != dtype or dims[-1] != total:
        return None
    lead = {2: [], 3: [(dims[0], sizes["h"])], 4: [(dims[0], sizes["b"]), (dims[1], sizes["h"])]}[len(dims)]
    if any(dim not in (ONE, full) for dim, full in lead):
        return None
    if dims[-2] == sizes["s"]:
        return "as is"
    return "expand" if dims[-2] == ONE and len(dims) == 4 else None


def _removable(region: list[ir.Node], output: ir.Value) -> bool:
    """Every value the region computes (but `output`) is read only inside it or by shape
    computations that die with it, and none is a graph output."""
    inside = set(region) | _dead_helpers(region)
    for node in inside:
        for out in node.outputs:
            if out is output:
                continue
            if out.is_graph_output() or any(use.node not in inside for use in out.uses()):
                return False
    return True


def _dead_helpers(region: list[ir.Node]) -> set[ir.Node]:
    """Shape-computing nodes that feed the region and nothing else (transitively)."""
    candidates: set[ir.Node] = set()
    stack = [v for node in region for v in node.inputs[1:] if v is not None]
    stack += [u.node.outputs[0] for node in region for out in node.outputs for u in out.uses()]
    seen: set[int] = set()
    while stack:
        value = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        node = value.producer()
        if node is not None and node.op_type in _SHAPE_OPS and node not in region:
            candidates.add(node)
            stack += [v for v in node.inputs if v is not None]
            stack += [u.node.outputs[0] for out in node.outputs for u in out.uses() if u.node.outputs]
    inside = set(region)
    changed = True
    while changed:
        changed = False
        for node in list(candidates):
            outs = node.outputs
            if any(o.is_graph_output() or any(u.node not in inside | candidates for u in o.uses()) for o in outs):
                candidates.discard(node)
                changed = True
    return candidates


# -- layouts -----------------------------------------------------------------------------------


def _dims(value: ir.Value | None) -> list[Size] | None:
    """The inferred shape as sizes (None when a dimension is unknown)."""
    if value is None or value.shape is None:
        return None
    sizes = []
    for dim in value.shape:
        if isinstance(dim, int):
            sizes.append(Size(dim))
        elif isinstance(dim, ir.SymbolicDim) and isinstance(dim.value, str):
            sizes.append(Size(1, (dim.value,)))
        else:
            return None
    return sizes


def _product(sizes: Iterable[Size]) -> Size:
    return math.prod(sizes, start=ONE)


def _axis_size(axis: tuple[Atom, ...]) -> Size:
    return _product(part for _, part in axis)


def _forward(layout: Layout, nodes: list[ir.Node]) -> Layout | None:
    """`layout` moved through Reshape, Transpose and scalar scalings (None: not provable)."""
    known = {}
    for node in nodes:
        if node.op_type in _SCALE_OPS:
            pass
        elif node.op_type == "Transpose":
            perm = node.attributes.get_ints("perm", list(range(len(layout)))[::-1])
            if sorted(perm) != list(range(len(layout))):
                return None
            layout = [layout[p] for p in perm]
        elif node.op_type == "Reshape":
            known[id(node.inputs[0])] = layout
            target = _shape_value(node.inputs[1], known)
            allowzero = node.attributes.get("allowzero")
            if target is not None and "copy" in target and allowzero is not None and allowzero.as_int():
                return None  # a literal 0 is then an empty dimension
            moved = _reshape(layout, target) if target is not None else None
            if moved is None:
                return None
            layout = moved
        else:
            return None
        known[id(node.outputs[0])] = layout
    return layout


def _reshape(layout: Layout, target: list[ShapeEntry]) -> Layout | None:
    """Row-major reshape of the atoms; an atom of known size splits where a target needs it."""
    total = _product(_axis_size(axis) for axis in layout)
    sizes: list[Size | None] = []
    for i, entry in enumerate(target):
        if entry == "copy":
            if i >= len(layout):
                return None
            sizes.append(_axis_size(layout[i]))
        elif entry == "infer":
            sizes.append(None)
        else:
            assert isinstance(entry, Size)
            sizes.append(entry)
    if sizes.count(None) > 1:
        return None
    if None in sizes:
        rest = total.over(_product(s for s in sizes if s is not None))
        if rest is None:
            return None
        sizes[sizes.index(None)] = rest
    atoms = [atom for axis in layout for atom in axis if atom[1] != ONE]
    result: Layout = []
    for size in sizes:
        assert size is not None
        taken: list[Atom] = []
        have = ONE
        while have != size:
            need = size.over(have)
            if need is None or not atoms:
                return None
            name, part = atoms.pop(0)
            if need.over(part) is not None:
                taken.append((name, part))
                have = have * part
            elif not part.symbols and not need.symbols and part.coef % need.coef == 0:
                taken.append((f"{name}/0", need))
                atoms.insert(0, (f"{name}/1", Size(part.coef // need.coef)))
                have = have * need
            else:
                return None
        result.append(tuple(taken))
    return result if not atoms else None


def _shape_value(value: ir.Value | None, known: dict[int, Layout]) -> list[ShapeEntry] | None:
    """A 1-D int64 shape tensor evaluated symbolically, or None."""
    if value is None:
        return None
    array = const_array(value)
    if array is not None:
        entries: list[ShapeEntry] = []
        for v in np.asarray(array).reshape(-1).tolist():
            if v > 0:
                entries.append(Size(int(v)))
            elif v == 0:
                entries.append("copy")
            elif v == -1:
                entries.append("infer")
            else:
                return None
        return entries
    node = value.producer()
    if node is None or node.domain != "":
        return None
    if node.op_type == "Shape":
        source = node.inputs[0]
        if source is None:
            return None
        layout = known.get(id(source))
        dims = [_axis_size(axis) for axis in layout] if layout is not None else _dims(source)
        if dims is None:
            return None
        start = node.attributes.get_int("start", 0)
        end_attr = node.attributes.get("end")
        end = int(end_attr.as_int()) if end_attr is not None else len(dims)
        return list(dims[start:end])
    if node.op_type in ("Cast", "Unsqueeze", "Squeeze"):
        return _shape_value(node.inputs[0], known)
    if node.op_type == "Concat":
        parts: list[ShapeEntry] = []
        for part in node.inputs:
            evaluated = _shape_value(part, known)
            if evaluated is None:
                return None
            parts += evaluated
        return parts
    if node.op_type == "Slice":
        data = _shape_value(node.inputs[0], known)
        bounds = [const_array(v) if v is not None else None for v in list(node.inputs[1:]) + [None] * 4]
        starts, ends, axes, steps = bounds[0], bounds[1], bounds[2], bounds[3]
        if data is None or starts is None or ends is None or starts.size != 1 or ends.size != 1:
            return None
        if (axes is not None and axes.reshape(-1).tolist() not in ([0], [-1])) or (
            steps is not None and steps.reshape(-1).tolist() != [1]
        ):
            return None
        # Python's slice clamps and counts from the end exactly as ONNX's Slice does (step 1)
        return list(data[int(starts.reshape(())) : int(ends.reshape(()))])
    if node.op_type == "Gather":
        data, index = _shape_value(node.inputs[0], known), const_array(node.inputs[1])
        if data is None or index is None or node.attributes.get_int("axis", 0) != 0:
            return None
        try:
            return [data[int(i)] for i in index.reshape(-1).tolist()]
        except IndexError:
            return None
    return None


# -- rewriting -------------------------------------------------------------------------------


def _rewrite(graph: ir.Graph, match: _Match) -> None:
    inputs: list[ir.Value | None] = [match.query, match.key, match.value]
    if match.bias is not None:
        inputs.append(_expanded(graph, match) if match.expand_bias else match.bias)
    attributes: dict[str, int | float] = {"scale": float(match.scale)}
    if match.rank == 3:
        attributes.update(q_num_heads=match.heads, kv_num_heads=match.heads)
    attention = ir.node("Attention", inputs, attributes=attributes, name=f"{match.last.name}_attention")
    graph.insert_before(match.last, attention)
    out, name = match.output, match.output.name
    out.name = f"{name}__fused"
    attention.outputs[0].name = name
    attention.outputs[0].shape = out.shape
    attention.outputs[0].type = out.type
    out.replace_all_uses_with(attention.outputs[0], replace_graph_outputs=True)
    # again now that Attention reads Q, K, V and the mask: what feeds it is no longer dead
    dead = set(match.region) | _dead_helpers(match.region)
    graph.remove([n for n in graph if n in dead], safe=True)


def _expanded(graph: ir.Graph, match: _Match) -> ir.Value:
    """The [b|1, h|1, 1, t] mask expanded to [b|1, h|1, s, t]: Expand(mask, [1, 1, s, 1]),
    s read from the query at run time."""
    assert match.bias is not None
    base = f"{match.last.name}_attention_mask"
    seq_axis = 1 if match.rank == 3 else 2
    constants = []
    for suffix, array in (("ones", np.array([1, 1], np.int64)), ("one", np.array([1], np.int64))):
        constant = ir.Value(
            name=f"{base}_{suffix}",
            shape=ir.Shape(array.shape),
            type=ir.TensorType(ir.DataType.INT64),
            const_value=ir.tensor(array),
        )
        graph.register_initializer(constant)
        constants.append(constant)
    ones, one = constants
    seq = ir.node("Shape", [match.query], attributes={"start": seq_axis, "end": seq_axis + 1}, name=f"{base}_seq")
    target = ir.node("Concat", [ones, seq.outputs[0], one], attributes={"axis": 0}, name=f"{base}_shape")
    expand = ir.node("Expand", [match.bias, target.outputs[0]], name=f"{base}_expand")
    for node in (seq, target, expand):
        graph.insert_before(match.last, node)
    return expand.outputs[0]
