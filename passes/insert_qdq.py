"""Insert QuantizeLinear/DequantizeLinear for one mixed-precision scheme.

Weights become int8/int4/int2 initializers behind a (per-channel) DequantizeLinear.
Activations are quantized where each layer reads them, at that layer's bits. Around w8a8
layers the pass builds the same int8 region as ONNX Runtime's `quantize_static`: layer
outputs are quantized too (a following ReLU folds into the zero point), value-moving ops
reuse their input's quantizer and Add/Concat/pooling get their own, so ONNX Runtime fuses
the region into QLinearConv/QGemm/QLinearAdd kernels.

Two more forms apply to MatMul/Gemm layers (a Gemm is first rewritten as MatMul + Add):
``dynamic`` reads its input through DynamicQuantizeLinear -> DequantizeLinear and holds
per-channel int8 weights (ONNX Runtime fuses the pattern into DynamicQuantizeMatMul);
``nbits`` holds block-wise 4/8-bit weights behind a blocked DequantizeLinear (axis 0,
`block_size`), which ONNX Runtime fuses into MatMulNBits. Both stay standard ONNX.
"""

from __future__ import annotations

__all__ = ["InsertQDQPass", "QDQResult"]

import dataclasses

import numpy as np
import onnx_ir as ir
from mpqc.passes._common import const_array, input_at, name_of, opset_version
from onnx_ir.passes.common import TopologicalSortPass

from mpqc.analysis import INTEGER_OPS, SHARED_SCALE_OPS, Analysis, Layer, takes_form
from mpqc.errors import MpqcError
from mpqc.precision import Precision
from mpqc.quant import QParams, activation_qparams, block_expand, block_weight_qparams, weight_qparams
from mpqc.ranges import range_of
from mpqc.recipe import Recipe
from mpqc.scheme import Scheme
from mpqc.stats import Calibration


@dataclasses.dataclass
class QDQResult(ir.passes.PassResult):
    """The pass result, with the bytes the quantized weights take."""

    #: Bytes of all layer weights at their stored widths (float layers at 4 bytes a value).
    weight_bytes: int = 0
    #: (tensor, bits) of every activation range the pass computed, in the order it did
    ranges: tuple[tuple[str, int], ...] = ()
    #: what the user should know (layers inside If branches that never ran)
    notes: tuple[str, ...] = ()


class InsertQDQPass(ir.passes.InPlacePass):
    """Quantizes the layers of `analysis` as `scheme` says, with ranges from `calibration`
    computed by `recipe`. `int8_kernels` lowers for a CPU whose only fast low-bit kernels
    are int8: every layer with quantized weights and activations becomes an int8 kernel
    holding its b-bit levels in int8 (what `ort-cpu` prices)."""

    def __init__(
        self,
        analysis: Analysis,
        scheme: Scheme,
        calibration: Calibration,
        recipe: Recipe | None = None,
        int8_kernels: bool = False,
        containers: bool = False,
    ) -> None:
        super().__init__()
        self.analysis = analysis
        self.scheme = scheme.bound_to(analysis.layer_names)
        self.calibration = calibration
        self.recipe = recipe or Recipe()
        self.int8_kernels = int8_kernels
        #: every sub-8-bit activation in an 8-bit container, not only those behind value-moving ops
        self.containers = containers

    def requires(self, model: ir.Model) -> None:
        needed = 25 if self.scheme.uses_bits(2) else 21
        if opset_version(model) < needed:
            raise ir.passes.PreconditionError(
                f"opset {needed} needed for this scheme, model has {opset_version(model)}"
            )

    def call(self, model: ir.Model) -> QDQResult:
        graph = model.graph
        self._names = _Names(graph)
        self._graph = graph
        self._here: ir.Graph = graph  # the graph constants go into (an If branch for layers inside one)
        self._notes: list[str] = []
        self._shared: dict[int, tuple[ir.Value, ir.Value, QParams]] = {}
        self._ranges: dict[tuple[str, int], None] = {}
        layers = {layer.name: layer for layer in self.analysis.layers}
        nodes = {node.name: node for node in ir.traversal.RecursiveGraphIterator(graph)}
        for name, layer in layers.items():
            prec = self.scheme[name]
            if prec.form == "qdq":
                continue
            if not takes_form(layer, prec.form, prec.block):
                raise MpqcError(
                    f"layer {name}: {prec.label} applies to MatMul/Gemm layers with a 2-D weight (for nbits, a "
                    f"whole number of blocks along K), not {layer.op_type} {list(layer.weight_shape)}"
                )
            if nodes[name].op_type == "Gemm":
                nodes[name] = self._gemm_as_matmul(nodes[name])
            if layer.input_shape is not None and len(layer.input_shape) == 2:
                self._lift_to_3d(nodes[name])
        region = self._int8_region(graph, layers)
        for value, (params, _) in region.items():
            self._quantize_output(value, params)
        read_params: dict[str, QParams] = {}
        cache: dict[tuple[int, int, int, bool], ir.Value] = {}
        for name, layer in layers.items():
            prec, node = self.scheme[name], nodes[name]
            bits = prec.a_bits
            if prec.form == "dynamic":
                self._here = _owner(node)
                current = input_at(node, 0)
                key = (id(current), id(self._here), 0, False)
                if key not in cache:
                    cache[key] = self._dynamic_before(node, current, layer.activation)
                node.replace_input_with(0, cache[key])
                continue
            if not prec.quantizes_activations or bits is None:
                continue
            stats = self.calibration.stats.get(layer.activation)
            if layer.scope and (stats is None or stats.count == 0):
                self._notes.append(
                    f"activation of {name} left in float: its If branch ({layer.scope}) never ran on the "
                    "calibration data"
                )
                continue
            self._here = _owner(node)
            current = input_at(node, 0)
            source = _region_source(current, region)
            symmetric = self._symmetric(prec)
            if source is not None and bits == 8 and symmetric == self.recipe.signed_activations:
                read_params[name] = region[source][0]
                continue
            key = (id(current), id(self._here), bits, symmetric)  # a branch has Q/DQ of its own
            params = self._activation(layer.activation, bits, symmetric)
            if (
                key not in cache
                and bits < 8
                and not self._lowered(prec)
                and (self.containers or _behind_value_moving_op(current))
            ):
                cache[key] = self._container_before(node, current, params, layer.activation)
            elif key not in cache:
                cache[key] = self._qdq_before(node, current, params, layer.activation)
                if self._lowered(prec) and bits < 8:
                    cache[key] = self._qdq_before(
                        node, cache[key], _in_8bit(params), f"{layer.activation}_container", role="container"
                    )
            node.replace_input_with(0, cache[key])
            read_params[name] = params
        weight_bytes = 0
        for name, layer in layers.items():
            prec, node = self.scheme[name], nodes[name]
            self._here = _owner(node)
            weight_bytes += self._quantize_weight(node, layer, prec, read_params.get(name))
        _drop_unused_initializers(graph)
        TopologicalSortPass()(model)
        return QDQResult(
            model, modified=True, weight_bytes=weight_bytes, ranges=tuple(self._ranges), notes=tuple(self._notes)
        )

    # -- the int8 region ------------------------------------------------------------------
    def _int8_region(self, graph: ir.Graph, layers: dict[str, Layer]) -> dict[ir.Value, tuple[QParams, bool]]:
        """Tensors quantized at their producer: value -> (params, own quantizer?)."""
        region: dict[ir.Value, tuple[QParams, bool]] = {}
        for node in list(graph):
            if node.graph is None:  # removed (an absorbed ReLU)
                continue
            out = node.outputs[0] if node.outputs else None
            if out is None or out.is_graph_output():
                continue
            acts = [v for v in node.inputs if v is not None and const_array(v) is None]
            layer = layers.get(node.name or "")
            if layer is not None and not layer.scope:
                if self._lowered(self.scheme[layer.name]):
                    out = self._past_relu(out)
                    region[out] = (self._region_params(out), True)
            elif node.op_type == "Split" and acts and acts[0] in region:  # every part keeps the input's grid
                for part in node.outputs:
                    if part is not None and not part.is_graph_output():
                        region[part] = (region[acts[0]][0], False)
            elif node.op_type in SHARED_SCALE_OPS and acts and acts[0] in region:
                region[out] = (region[acts[0]][0], False)
            elif (
                node.op_type in INTEGER_OPS
                and acts
                and len(acts) == len([v for v in node.inputs if v is not None])
                and all(v in region for v in acts)
            ):
                region[out] = (self._region_params(out), True)
        return region

    def _symmetric(self, prec: Precision) -> bool:
        """Signed activations with zero point 0: as the precision says, or as the backend needs."""
        return prec.a_symmetric or self.recipe.signed_activations

    def _lone_relu(self, out: ir.Value) -> ir.Node | None:
        """The ReLU that is `out`'s only use, if its output is calibrated and not a graph output."""
        uses = list(out.uses())
        if len(uses) != 1 or uses[0].node.op_type != "Relu":
            return None
        relu_out = uses[0].node.outputs[0]
        if relu_out.is_graph_output() or (relu_out.name or "") not in self.calibration:
            return None
        return uses[0].node

    def _past_relu(self, out: ir.Value) -> ir.Value:
        """Where a layer's signed output is quantized: after a lone following ReLU (a signed
        zero point cannot absorb it; TensorRT fuses Conv + ReLU + Q), else at the layer."""
        relu = self._lone_relu(out) if self.recipe.signed_activations else None
        return out if relu is None else relu.outputs[0]

    def _lowered(self, prec: Precision) -> bool:
        """Runs as an int8 kernel: w8a8 always; any quantized weight and activation when
        lowering for a CPU whose only fast low-bit kernels are int8 (`int8_kernels`)."""
        if prec.form != "qdq":
            return False
        if self.int8_kernels:
            return prec.w_bits is not None and prec.a_bits is not None and prec.a_bits <= 8
        return prec.w_bits == 8 and prec.a_bits == 8

    def _region_params(self, out: ir.Value) -> QParams:
        """8-bit params for a producer's output (uint8, or int8 with zero point 0 where the
        backend needs it); unsigned, absorbs a lone following ReLU when exact."""
        range_name = out.name or ""
        if self.recipe.signed_activations:
            return self._activation(range_name, 8, True)
        relu = self._lone_relu(out)
        if relu is not None and self._absorbable(relu):
            relu_out = relu.outputs[0]
            range_name = relu_out.name or ""
            ir.convenience.replace_all_uses_with(relu_out, out)
            self._graph.remove(relu, safe=True)
        return self._activation(range_name, 8, False)

    def _absorbable(self, relu: ir.Node) -> bool:
        """Whether every reader of a lone ReLU's output takes the unsigned 8-bit grid that absorbs it."""
        out = relu.outputs[0]
        layer_names = {layer.name for layer in self.analysis.layers}
        for use in out.uses():
            node = use.node
            if node.name in layer_names:
                prec = self.scheme[node.name]
                if not prec.quantizes_activations or prec.a_bits != 8 or self._symmetric(prec) or use.idx != 0:
                    return False
            elif node.op_type not in SHARED_SCALE_OPS + INTEGER_OPS:
                return False
        return True

    # -- node building --------------------------------------------------------------------
    def _activation(self, tensor: str, bits: int, symmetric: bool) -> QParams:
        if tensor not in self.calibration:
            raise MpqcError(f"no calibration statistics for tensor {tensor}")
        self._ranges.setdefault((tensor, bits), None)
        method = self.recipe.method_for(tensor, bits)
        lo, hi = range_of(self.calibration, tensor, bits, symmetric, method, self.recipe.percentile)
        return activation_qparams(lo, hi, bits, symmetric)

    def _qdq_nodes(
        self, value: ir.Value, params: QParams, hint: str, role: str = "activation"
    ) -> tuple[ir.Node, ir.Node]:
        """One Q/DQ pair. Quantizers built from the same params object (a value-moving op and
        its input) share their scale and zero-point initializers, so tuning one tunes both."""
        if id(params) not in self._shared:
            scale = self._constant(f"{hint}_scale", np.asarray(params.scale, np.float32))
            zero = self._constant(f"{hint}_zero_point", params.zero_point_array())
            self._shared[id(params)] = (scale, zero, params)
        scale, zero, _ = self._shared[id(params)]
        q_out = ir.Value(name=self._names.value(f"{hint}_quantized"))
        dq_out = ir.Value(name=self._names.value(f"{hint}_dequantized"))
        meta = _meta(role, params, tensor=value.name or "")
        q = ir.node(
            "QuantizeLinear",
            [value, scale, zero],
            outputs=[q_out],
            name=self._names.node(f"{hint}_Q"),
            metadata_props=dict(meta),
        )
        dq = ir.node(
            "DequantizeLinear",
            [q_out, scale, zero],
            outputs=[dq_out],
            name=self._names.node(f"{hint}_DQ"),
            metadata_props=dict(meta),
        )
        dq_out.dtype = ir.DataType.FLOAT
        dq_out.shape = value.shape
        return q, dq

    def _quantize_output(self, value: ir.Value, params: QParams) -> None:
        uses = list(value.uses())
        q, dq = self._qdq_nodes(value, params, value.name or "t")
        producer = value.producer()
        assert producer is not None
        self._graph.insert_after(producer, [q, dq])
        for use in uses:
            use.node.replace_input_with(use.idx, dq.outputs[0])

    def _qdq_before(
        self, node: ir.Node, value: ir.Value, params: QParams, hint: str, role: str = "activation"
    ) -> ir.Value:
        q, dq = self._qdq_nodes(value, params, f"{hint}_a{params.bits}", role)
        _owner(node).insert_before(node, [q, dq])
        return dq.outputs[0]

    def _container_before(self, node: ir.Node, value: ir.Value, params: QParams, hint: str) -> ir.Value:
        """A b-bit grid held in an 8-bit container: Clip to the b-bit range, then an 8-bit Q/DQ
        pair with the same scale and zero point. Numerically the b-bit Q/DQ; the types are
        ones ONNX Runtime has kernels for everywhere. Its QDQ propagation moves a Q across
        value-moving ops (MaxPool, Slice, ...) that have no 4- or 2-bit kernels, and then
        refuses the model; the Clip also keeps the Q where it is."""
        scale, zp = float(params.scale), int(params.zero_point)
        lo = self._constant(f"{hint}_a{params.bits}_min", np.asarray((params.qmin - zp) * scale, np.float32))
        hi = self._constant(f"{hint}_a{params.bits}_max", np.asarray((params.qmax - zp) * scale, np.float32))
        clipped = ir.Value(name=self._names.value(f"{hint}_a{params.bits}_clipped"), shape=value.shape)
        clipped.dtype = ir.DataType.FLOAT
        held = QParams(params.scale, params.zero_point, 8, params.signed, None, (params.qmin, params.qmax))
        clip = ir.node(
            "Clip",
            [value, lo, hi],
            outputs=[clipped],
            name=self._names.node(f"{hint}_a{params.bits}_clip"),
            metadata_props={**_meta("clip", params, tensor=value.name or ""), "mpqc.bits": str(params.bits)},
        )
        q, dq = self._qdq_nodes(clipped, held, f"{hint}_a{params.bits}", "activation")
        for n in (q, dq):
            n.metadata_props["mpqc.bits"] = str(params.bits)
            n.metadata_props["mpqc.storage"] = "8"
        _owner(node).insert_before(node, [clip, q, dq])
        return dq.outputs[0]

    def _constant(self, hint: str, array: np.ndarray) -> ir.Value:
        name = self._names.value(hint)
        value = ir.Value(
            name=name,
            shape=ir.Shape(array.shape),
            type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
            const_value=ir.tensor(array, name=name),
        )
        self._here.register_initializer(value)
        return value

    def _quantize_weight(self, node: ir.Node, layer: Layer, prec: Precision, act: QParams | None) -> int:
        weight = const_array(node.inputs[1])
        assert weight is not None
        if prec.w_bits is None:
            return int(weight.size) * 4
        if prec.form != "qdq":
            return self._matmul_weight(node, layer, prec, weight)
        per_channel = prec.per_channel and layer.op_type not in self.recipe.per_tensor_weight_ops
        axis = layer.channel_axis if per_channel else None
        method = self.recipe.weight_method_for(prec.w_bits)
        params = weight_qparams(weight, prec.w_bits, axis, prec.w_symmetric, method, self.recipe.weights_reduced)
        if self.recipe.zero_points_zero:  # a symmetric grid: -2^(b-1) has no positive twin
            params.qmin = max(params.qmin, -params.qmax)
        shape = [1] * weight.ndim
        if axis is not None:
            shape[axis] = -1
        scale_b = params.scale.reshape(shape) if axis is not None else params.scale
        zp_b = params.zero_point.reshape(shape) if axis is not None else params.zero_point
        lowered = self._lowered(prec) and act is not None and not layer.scope
        storage = np.int8 if lowered else params.zero_point_array().dtype
        q = np.clip(np.rint(weight / scale_b) + zp_b, params.qmin, params.qmax).astype(storage)
        hint = f"{layer.name}_w{prec.w_bits}"
        attrs = {"axis": axis} if axis is not None else {}
        meta = {**_meta("weight", params, layer=layer.name), "mpqc.source": layer.weight}
        dq_out = self._weight_dq(node, hint, q, params.scale, params.zero_point_array().astype(storage), attrs, meta)
        # quantized activations but no int8 kernel (only w8a8 is one unless lowering): guard
        guard = not lowered and prec.quantizes_activations
        node.replace_input_with(1, self._guard(node, dq_out, hint) if guard else dq_out)
        if (
            lowered
            and act is not None
            and layer.bias is not None
            and len(node.inputs) > 2
            and self.recipe.quantize_bias
        ):
            self._quantize_bias(node, layer, params, act)
        return (int(weight.size) * prec.w_bits + 7) // 8

    def _matmul_weight(self, node: ir.Node, layer: Layer, prec: Precision, weight: np.ndarray) -> int:
        """Weights of a dynamic or nbits layer (a MatMul by now: weight [K, N]): per output
        channel (axis 1) for dynamic int8, per block of the K axis (axis 0) for nbits."""
        assert prec.w_bits is not None
        method = self.recipe.weight_method_for(prec.w_bits)
        if prec.form == "nbits":
            params = block_weight_qparams(
                weight, prec.w_bits, prec.block, prec.w_symmetric, method, mirror=not self.recipe.zero_points_zero
            )
            scale_b = block_expand(params.scale, prec.block, weight.shape[0])
            zp_b = block_expand(params.zero_point, prec.block, weight.shape[0])
            attrs: dict[str, int] = {"axis": 0, "block_size": prec.block}
            extra_bytes = params.scale.size * 4
        else:
            params = weight_qparams(weight, 8, 1, True, method, self.recipe.weights_reduced)
            scale_b, zp_b = params.scale.reshape(1, -1), params.zero_point.reshape(1, -1)
            attrs, extra_bytes = {"axis": 1}, 0
        storage = params.zero_point_array().dtype
        q = np.clip(np.rint(weight / scale_b) + zp_b, params.qmin, params.qmax).astype(storage)
        meta = {**_meta("weight", params, layer=layer.name), "mpqc.form": prec.form}
        if prec.form == "nbits":
            meta["mpqc.block"] = str(prec.block)
        source = node.inputs[1]
        meta["mpqc.source"] = layer.weight if source is not None and source.name == layer.weight else ""
        hint = f"{layer.name}_w{prec.w_bits}"
        dq_out = self._weight_dq(node, hint, q, params.scale, params.zero_point_array(), attrs, meta)
        node.replace_input_with(1, dq_out)
        return (int(weight.size) * prec.w_bits + 7) // 8 + int(extra_bytes)

    def _weight_dq(
        self,
        node: ir.Node,
        hint: str,
        q: np.ndarray,
        scale: np.ndarray,
        zero: np.ndarray,
        attrs: dict[str, int],
        meta: dict[str, str],
    ) -> ir.Value:
        """The weight's integers, scale and zero point as initializers behind a
        DequantizeLinear inserted before `node`; returns its output."""
        inputs = [
            self._constant(f"{hint}_quantized", q),
            self._constant(f"{hint}_scale", scale),
            self._constant(f"{hint}_zero_point", zero),
        ]
        out = ir.Value(name=self._names.value(f"{hint}_dequantized"), shape=ir.Shape(q.shape))
        out.dtype = ir.DataType.FLOAT
        dq = ir.node(
            "DequantizeLinear", inputs, attrs, outputs=[out], name=self._names.node(f"{hint}_DQ"), metadata_props=meta
        )
        _owner(node).insert_before(node, [dq])
        return out

    def _dynamic_before(self, node: ir.Node, value: ir.Value, hint: str) -> ir.Value:
        """DynamicQuantizeLinear -> DequantizeLinear: uint8 at each run's own range."""
        names = [self._names.value(f"{hint}_dyn_{part}") for part in ("quantized", "scale", "zero_point")]
        outs = [ir.Value(name=n) for n in names]
        dq_out = ir.Value(name=self._names.value(f"{hint}_dyn_dequantized"), shape=value.shape)
        dq_out.dtype = ir.DataType.FLOAT
        meta = {"mpqc.role": "dynamic", "mpqc.bits": "8", "mpqc.tensor": value.name or ""}
        quantize = ir.node(
            "DynamicQuantizeLinear",
            [value],
            outputs=outs,
            name=self._names.node(f"{hint}_dyn_Q"),
            metadata_props=dict(meta),
        )
        dequantize = ir.node(
            "DequantizeLinear",
            outs,
            outputs=[dq_out],
            name=self._names.node(f"{hint}_dyn_DQ"),
            metadata_props=dict(meta),
        )
        _owner(node).insert_before(node, [quantize, dequantize])
        return dq_out

    def _gemm_as_matmul(self, gemm: ir.Node) -> ir.Node:
        """The Gemm as MatMul (+ Add for its bias), named as the layer: the form ONNX Runtime's
        dynamic and n-bit fusions match. alpha and transB go into the weight, beta into the bias."""
        attrs = gemm.attributes
        weight = const_array(gemm.inputs[1])
        assert weight is not None and gemm.inputs[0] is not None
        if attrs.get_int("transB", 0):
            weight = weight.T
        weight = (weight * np.float32(attrs.get_float("alpha", 1.0))).astype(np.float32)
        graph = _owner(gemm)
        self._here = graph
        w_value = self._constant(f"{gemm.name}_weight_kn", np.ascontiguousarray(weight))
        out = gemm.outputs[0]
        product = ir.Value(name=self._names.value(f"{out.name}_matmul"), shape=out.shape)
        product.dtype = ir.DataType.FLOAT
        matmul = ir.node("MatMul", [gemm.inputs[0], w_value], outputs=[product], name=gemm.name)
        new_nodes, result = [matmul], product
        bias = const_array(gemm.inputs[2]) if len(gemm.inputs) > 2 and gemm.inputs[2] is not None else None
        if bias is not None:
            b_value = self._constant(
                f"{gemm.name}_bias", (bias * np.float32(attrs.get_float("beta", 1.0))).astype(np.float32)
            )
            result = ir.Value(name=self._names.value(f"{out.name}_biased"), shape=out.shape)
            result.dtype = ir.DataType.FLOAT
            new_nodes.append(
                ir.node("Add", [product, b_value], outputs=[result], name=self._names.node(f"{gemm.name}_bias_add"))
            )
        ir.convenience.replace_nodes_and_values(graph, gemm, [gemm], new_nodes, [out], [result])
        return matmul

    def _lift_to_3d(self, node: ir.Node) -> None:
        """Unsqueeze -> MatMul -> Squeeze for a dynamic or nbits layer with a 2-D input. ONNX
        Runtime first fuses a 2-D MatMul and the Add of its bias into a Gemm, which its
        dynamic and n-bit fusions do not match (the layer would run in float); a 3-D MatMul
        is left alone and becomes DynamicQuantizeMatMul or MatMulNBits."""
        graph = _owner(node)
        self._here = graph
        axes = self._constant(f"{node.name}_lift_axes", np.asarray([0], np.int64))
        source, out = node.inputs[0], node.outputs[0]
        assert source is not None
        lifted = ir.Value(name=self._names.value(f"{source.name}_3d"))
        lifted.dtype = ir.DataType.FLOAT
        unsqueeze = ir.node("Unsqueeze", [source, axes], outputs=[lifted], name=self._names.node(f"{node.name}_lift"))
        graph.insert_before(node, [unsqueeze])
        node.replace_input_with(0, lifted)
        flat = ir.Value(name=self._names.value(f"{out.name}_2d"), shape=out.shape)
        flat.dtype = ir.DataType.FLOAT
        squeeze = ir.node("Squeeze", [out, axes], outputs=[flat], name=self._names.node(f"{node.name}_drop"))
        ir.convenience.replace_all_uses_with(out, flat, replace_graph_outputs=True)
        squeeze.replace_input_with(0, out)
        graph.insert_after(node, [squeeze])
        if flat.is_graph_output():  # keep the model's output name
            name = out.name
            out.name = self._names.value(f"{name}_3d")
            flat.name = name
        out.shape = None

    def _guard(self, node: ir.Node, weight: ir.Value, hint: str) -> ir.Value:
        """A same-shape Reshape between the weight's DequantizeLinear and a layer that must not
        become an int8 kernel.

        ONNX Runtime 1.32's QDQ selectors check 4-bit weights but not 2-bit weights nor 4- or
        2-bit activations, fuse such layers into QLinearConv/QGemm and then fail to load the
        model ("Type 'tensor(int2)' / 'tensor(uint4)' ... of operator (QLinearConv) is
        invalid"). The Reshape hides the pattern; the layer runs as DequantizeLinear + float
        op, which is what a sub-8-bit layer does on the CPU anyway."""
        assert weight.shape is not None
        shape = self._constant(f"{weight.name}_shape", np.asarray(list(weight.shape), np.int64))
        out = ir.Value(name=self._names.value(f"{weight.name}_guarded"), shape=weight.shape)
        out.dtype = ir.DataType.FLOAT
        reshape = ir.node("Reshape", [weight, shape], outputs=[out], name=self._names.node(f"{hint}_guard"))
        _owner(node).insert_before(node, [reshape])
        return out

    def _quantize_bias(self, node: ir.Node, layer: Layer, w: QParams, act: QParams) -> None:
        """int32 bias at scale s_x * s_w: the form ONNX Runtime needs to fuse QLinearConv/QGemm."""
        bias = const_array(node.inputs[2])
        assert bias is not None
        scale = (np.float32(act.scale) * w.scale).astype(np.float32)
        if w.axis is None:
            scale_b = scale
        else:
            scale_b = scale.reshape(-1)
        q = np.clip(np.rint(bias / scale_b), -(2**31), 2**31 - 1).astype(np.int32)
        hint = f"{layer.name}_bias"
        q_value = self._constant(f"{hint}_quantized", q)
        s_value = self._constant(f"{hint}_scale", scale_b.astype(np.float32))
        z_value = self._constant(f"{hint}_zero_point", np.zeros(np.shape(scale_b), np.int32))
        out = ir.Value(name=self._names.value(f"{hint}_dequantized"), shape=ir.Shape(bias.shape))
        out.dtype = ir.DataType.FLOAT
        attrs = {"axis": 0} if np.ndim(scale_b) == 1 else {}
        dq = ir.node(
            "DequantizeLinear",
            [q_value, s_value, z_value],
            attrs,
            outputs=[out],
            name=self._names.node(f"{hint}_DQ"),
            metadata_props={"mpqc.role": "bias", "mpqc.layer": layer.name, "mpqc.source": layer.bias or ""},
        )
        self._graph.insert_before(node, [dq])
        node.replace_input_with(2, out)


def _meta(role: str, params: QParams, layer: str = "", tensor: str = "") -> dict[str, str]:
    """What QAT and reports need to know about a quantizer, kept on the node (saved with it)."""
    meta = {
        "mpqc.role": role,
        "mpqc.bits": str(params.bits),
        "mpqc.qmin": str(params.qmin),
        "mpqc.qmax": str(params.qmax),
    }
    if layer:
        meta["mpqc.layer"] = layer
    if tensor:
        meta["mpqc.tensor"] = tensor
    return meta


#: ops ONNX Runtime's QDQ propagation moves Quantize/Dequantize across (found by loading
#: every case in tests/passes/test_insert_qdq.py): a b-bit Q behind one of them would end up
#: in front of it, where the op has no b-bit kernel
VALUE_MOVING_OPS = frozenset(
    {
        "MaxPool",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Slice",
        "Resize",
        "Gather",
        "Flatten",
        "Split",
        "Expand",
        "Tile",
        "DepthToSpace",
        "SpaceToDepth",
        "Pad",
        "Concat",
        "Identity",
        "AveragePool",
        "Upsample",
    }
)


def _behind_value_moving_op(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type in VALUE_MOVING_OPS


def _in_8bit(params: QParams) -> QParams:
    """The same quantization grid held in an 8-bit container: exact, and what int8 kernels take."""
    return QParams(params.scale, params.zero_point, 8, params.signed, params.axis)


def _region_source(value: ir.Value, region: dict[ir.Value, tuple[QParams, bool]]) -> ir.Value | None:
    """The region tensor a DequantizeLinear output stands for, if any."""
    producer = value.producer()
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    q = producer.inputs[0].producer() if producer.inputs[0] is not None else None
    if q is None or q.op_type != "QuantizeLinear" or q.inputs[0] not in region:
        return None
    return q.inputs[0]


def _drop_unused_initializers(graph: ir.Graph) -> None:
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output() and not value.is_graph_input():
            del graph.initializers[name]


def _owner(node: ir.Node) -> ir.Graph:
    graph = node.graph
    assert isinstance(graph, ir.Graph)
    return graph


class _Names:
    """Fresh, readable, unique value and node names (unique across every If branch too)."""

    def __init__(self, graph: ir.Graph) -> None:
        every = list(ir.traversal.RecursiveGraphIterator(graph))
        self.values = {name_of(v) for n in every for v in (*n.inputs, *n.outputs) if v is not None}
        self.values |= {name_of(v) for v in graph.inputs}
        for sub in (
            graph,
            *[a.value for n in every for a in n.attributes.values() if a.type == ir.AttributeType.GRAPH],
        ):
            self.values |= set(sub.initializers)
        self.nodes = {n.name or "" for n in every}

    @staticmethod
    def _fresh(taken: set[str], base: str) -> str:
        name, i = base, 0
        while name in taken:
            i += 1
            name = f"{base}_{i}"
        taken.add(name)
        return name

    def value(self, base: str) -> str:
        return self._fresh(self.values, base)

    def node(self, base: str) -> str:
        return self._fresh(self.nodes, base)
