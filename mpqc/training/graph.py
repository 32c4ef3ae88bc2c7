"""The QDQ graph of a scheme as a trainable torch module.

Built from the very graph ONNX Runtime runs: every QuantizeLinear becomes a `FakeQuant`
with a learnable scale (shared where the graph shares the scale initializer), the paired
DequantizeLinear passes through, weight DequantizeLinear nodes fake-quantize a float latent
weight (initialised from the float model), and everything else runs as its torch twin
(`mpqc.training.ops`). `write_back` puts the trained weights and scales into the same graph.
A graph with an op QAT cannot run is refused on construction, naming the op and node."""

from __future__ import annotations

import re

import ml_dtypes  # noqa: F401  (registers int4/int2 numpy types the IR hands over)
import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from mpqc.errors import ModelError
from mpqc.passes._common import const_of, input_at, name_of
from mpqc.training.fakequant import FakeQuant, dynamic_fake_quant
from mpqc.training.ops import run_op, unsupported

__all__ = ["TrainableGraph", "LAYER_OPS"]

_SAFE = re.compile(r"[^0-9A-Za-z_]")
#: ops whose constant float inputs (weights, biases) train with the quantizers
LAYER_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


#: producers whose DequantizeLinear passes the fake-quantized values through
_QUANTIZERS = ("QuantizeLinear", "DynamicQuantizeLinear")


def _safe(name: str) -> str:
    return "p_" + _SAFE.sub("_", name)


def _role(node: ir.Node) -> str:
    return node.metadata_props.get("mpqc.role", "")


def _meta_int(node: ir.Node, key: str) -> int:
    return int(node.metadata_props[key])


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, np.float32).copy())


class TrainableGraph(nn.Module):
    """A QDQ graph as a torch module: fake quantizers, latent weights, and every other op in torch."""

    def __init__(self, qdq: ir.Model, float_weights: dict[str, np.ndarray]) -> None:
        """`float_weights`: the float model's initializers by name (latent weights start there)."""
        super().__init__()
        self.graph = qdq.graph
        self.nodes = list(self.graph)
        every = list(ir.traversal.RecursiveGraphIterator(self.graph))  # If branches too
        special = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "If")
        missing = [n for n in unsupported(every) if n.op_type not in special]
        if missing:
            ops = sorted({n.op_type for n in missing})
            raise ModelError(
                f"QAT cannot train through op(s) {', '.join(ops)} (node {missing[0].name}"
                f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); they have no torch form here"
            )
        self.input_names = [name_of(v) for v in self.graph.inputs if not v.is_initializer()]
        self.output_names = [name_of(v) for v in self.graph.outputs]
        self.params = nn.ParameterDict()
        self.quantizers = nn.ModuleDict()
        self._constants: dict[str, torch.Tensor] = {}
        self._param_of: dict[str, str] = {}  # graph value name -> parameter key
        self._layer_weight: dict[str, str] = {}  # layer -> parameter key of its latent weight
        self._q_of_scale: dict[str, str] = {}  # scale initializer -> quantizer key
        self._values: dict[str, ir.Value] = {}  # initializers written back, in whichever graph they live
        self._bias_nodes: list[ir.Node] = []
        self._bias_scale: dict[str, tuple[str, str]] = {}  # bias value -> (activation scale, layer)
        self._weight_nodes: list[ir.Node] = []
        self._clips: list[ir.Node] = []  # container clips: identity in training, bounds rewritten after
        for node in every:
            role = _role(node)
            if node.op_type == "DequantizeLinear" and role == "weight":
                self._add_weight(node, float_weights)
            elif node.op_type == "DequantizeLinear" and role == "bias":
                self._add_bias(node, float_weights)
            elif node.op_type == "QuantizeLinear" and role in ("activation", "container"):
                self._add_activation(node)
            elif node.op_type == "Clip" and role == "clip":
                self._clips.append(node)
            elif node.op_type in LAYER_OPS:
                for value in node.inputs[1:]:  # float layers: weights and biases train too
                    if value is None or not value.is_initializer() or value.const_value is None:
                        continue
                    if value.const_value.dtype == ir.DataType.FLOAT and name_of(value) not in self._param_of:
                        key = _safe(name_of(value))
                        self.params[key] = nn.Parameter(_tensor(const_of(value)))
                        self._param_of[name_of(value)] = key
                        self._values[name_of(value)] = value

    # -- construction ----------------------------------------------------------------------
    def _add_weight(self, node: ir.Node, float_weights: dict[str, np.ndarray]) -> None:
        layer = node.metadata_props["mpqc.layer"]
        q, scale, zero = (const_of(input_at(node, i)) for i in range(3))
        latent = float_weights.get(node.metadata_props.get("mpqc.source", ""))
        block = node.attributes.get_int("block_size", 0)
        axis = node.attributes.get_int("axis", 1) % q.ndim if scale.ndim == 1 or block else None
        quantizer = FakeQuant(
            _tensor(scale),
            _tensor(zero.astype(np.float32)),
            _meta_int(node, "mpqc.qmin"),
            _meta_int(node, "mpqc.qmax"),
            axis,
            block,
        )
        if latent is None or latent.shape != q.shape:  # fall back to the dequantized values
            ints = torch.from_numpy(q.astype(np.float32))
            values = (ints - quantizer.shaped(quantizer.zero_point, ints)) * quantizer.shaped(quantizer.scale, ints)
            latent = values.detach().numpy()
        key = _safe(f"{layer}_weight")
        self.params[key] = nn.Parameter(_tensor(latent))
        self.quantizers[key] = quantizer
        self._layer_weight[layer] = key
        self._param_of[name_of(node.outputs[0])] = key
        self._weight_nodes.append(node)

    def _add_bias(self, node: ir.Node, float_weights: dict[str, np.ndarray]) -> None:
        layer = node.metadata_props["mpqc.layer"]
        q, scale = const_of(input_at(node, 0)), const_of(input_at(node, 1))
        bias = float_weights.get(node.metadata_props.get("mpqc.source", ""))
        if bias is None:
            bias = q.astype(np.float32) * scale.astype(np.float32)
        key = _safe(f"{layer}_bias")
        self.params[key] = nn.Parameter(_tensor(bias))
        out = name_of(node.outputs[0])
        self._param_of[out] = key
        self._bias_nodes.append(node)
        act_dq = self._layer_node(node).inputs[0]
        producer = act_dq.producer() if act_dq is not None else None
        if producer is not None and producer.op_type == "DequantizeLinear":
            self._bias_scale[out] = (name_of(producer.inputs[1]), layer)

    @staticmethod
    def _layer_node(bias_dq: ir.Node) -> ir.Node:
        return next(iter(bias_dq.outputs[0].uses())).node

    def _add_activation(self, node: ir.Node) -> None:
        scale, zero = input_at(node, 1), input_at(node, 2)
        key = _safe(f"q_{name_of(scale)}")
        if key not in self.quantizers:
            self.quantizers[key] = FakeQuant(
                _tensor(const_of(scale)),
                _tensor(const_of(zero).astype(np.float32)),
                _meta_int(node, "mpqc.qmin"),
                _meta_int(node, "mpqc.qmax"),
                None,
            )
            self._q_of_scale[name_of(scale)] = key
            self._values[name_of(scale)] = scale

    # -- running ---------------------------------------------------------------------------
    def _constant(self, value: ir.Value) -> torch.Tensor:
        name = name_of(value)
        if name not in self._constants:
            array = np.asarray(const_of(value))
            if array.dtype.kind in "iu":
                array = array.astype(np.int64)
            self._constants[name] = torch.from_numpy(array.copy())
        return self._constants[name]

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every graph output, in order."""
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        self._run(self.nodes, env)
        return tuple(env[name] for name in self.output_names)

    def _run_if(self, node: ir.Node, env: dict[str, torch.Tensor]) -> None:
        """The branch the condition picks, with the enclosing values in scope."""
        condition = bool(env[name_of(node.inputs[0])].reshape(-1)[0].item())
        branch: ir.Graph = node.attributes["then_branch" if condition else "else_branch"].value
        inner = dict(env)
        self._run(list(branch), inner)
        for value, result in zip(node.outputs, branch.outputs):
            env[name_of(value)] = inner[name_of(result)]

    def _run(self, nodes: list[ir.Node], env: dict[str, torch.Tensor]) -> None:
        for node in nodes:
            if node.op_type == "If":
                self._run_if(node, env)
                continue
            out = name_of(node.outputs[0])
            if out in self._param_of:  # weight/bias DequantizeLinear: fake-quantized latent
                key = self._param_of[out]
                if key in self.quantizers:
                    env[out] = self.quantizers[key](self.params[key])
                elif out in self._bias_scale:
                    env[out] = self._int32_bias(out, self.params[key])
                else:
                    env[out] = self.params[key]
                continue
            if node.op_type == "DynamicQuantizeLinear":  # its DequantizeLinear passes this through
                env[out] = dynamic_fake_quant(env[name_of(node.inputs[0])])
                continue
            if node.op_type == "QuantizeLinear":
                quantizer = self.quantizers[self._q_of_scale[name_of(node.inputs[1])]]
                env[out] = quantizer(env[name_of(node.inputs[0])])
                continue
            if node.op_type == "Clip" and _role(node) == "clip":  # the fake quantizer after it clamps
                env[out] = env[name_of(node.inputs[0])]
                continue
            source = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
            if node.op_type == "DequantizeLinear" and source is not None and source.op_type in _QUANTIZERS:
                env[out] = env[name_of(node.inputs[0])]
                continue
            args: list[torch.Tensor | None] = []
            for value in node.inputs:
                name = name_of(value)
                if value is None or not name:
                    args.append(None)
                elif name in self._param_of and name not in env:
                    args.append(self.params[self._param_of[name]])
                elif name in env:
                    args.append(env[name])
                else:
                    args.append(self._constant(value))
            for value, result in zip(node.outputs, run_op(node, args)):
                env[name_of(value)] = result

    def _quantizer(self, key: str) -> FakeQuant:
        quantizer = self.quantizers[key]
        assert isinstance(quantizer, FakeQuant)
        return quantizer

    def _int32_bias(self, value: str, bias: torch.Tensor) -> torch.Tensor:
        """The bias as ONNX Runtime sees it: int32 at scale s_x * s_w (straight-through)."""
        act_scale, layer = self._bias_scale[value]
        s_x = self._quantizer(self._q_of_scale[act_scale]).scale.abs().reshape(())
        s_w = self._quantizer(self._layer_weight[layer]).scale.abs()
        step = (s_x * s_w).reshape(-1) if s_w.ndim else s_x * s_w
        scaled = bias / step
        return ((torch.round(scaled) - scaled).detach() + scaled) * step

    # -- write-back ------------------------------------------------------------------------
    @torch.no_grad()
    def write_back(self) -> None:
        """Trained weights, scales and biases into the graph this module was built from."""
        for node in self._weight_nodes:
            key = self._param_of[name_of(node.outputs[0])]
            fq = self.quantizers[key]
            assert isinstance(fq, FakeQuant)
            q_value, scale_value = input_at(node, 0), input_at(node, 1)
            ints = fq.integers(self.params[key]).numpy()
            dtype = const_of(q_value).dtype
            q_value.const_value = ir.tensor(ints.astype(np.int32).astype(dtype), name=q_value.name)
            scale_value.const_value = ir.tensor(
                fq.scale.detach().abs().numpy().astype(np.float32), name=scale_value.name
            )
        for scale_name, key in self._q_of_scale.items():
            value = self._values[scale_name]
            shape = const_of(value).shape
            scale = self._quantizer(key).scale.detach().abs().reshape(shape).numpy().astype(np.float32)
            value.const_value = ir.tensor(scale, name=scale_name)
        for node in self._bias_nodes:
            self._write_bias(node)
        for clip in self._clips:
            self._write_clip(clip)
        for name, key in self._param_of.items():
            initializer = self._values.get(name)
            if initializer is not None and initializer.const_value is not None:
                if initializer.const_value.dtype == ir.DataType.FLOAT:
                    initializer.const_value = ir.tensor(self.params[key].detach().numpy().astype(np.float32), name=name)

    def _write_clip(self, clip: ir.Node) -> None:
        """A container's bounds at the trained scale: the b-bit range of the Q that follows."""
        q = next(use.node for use in clip.outputs[0].uses() if use.node.op_type == "QuantizeLinear")
        quantizer = self._quantizer(self._q_of_scale[name_of(q.inputs[1])])
        scale = float(quantizer.scale.detach().abs().item())
        zero = float(quantizer.zero_point.reshape(-1)[0].item())
        for index, level in ((1, quantizer.qmin), (2, quantizer.qmax)):
            bound = input_at(clip, index)
            bound.const_value = ir.tensor(np.asarray((level - zero) * scale, np.float32), name=bound.name)

    def _write_bias(self, node: ir.Node) -> None:
        """int32 bias at the trained s_x * s_w."""
        act_dq = input_at(self._layer_node(node), 0).producer()
        assert act_dq is not None
        weight_key = self._layer_weight[node.metadata_props["mpqc.layer"]]
        s_w = self._quantizer(weight_key).scale.detach().abs().numpy().astype(np.float32)
        s_x = np.float32(self._quantizer(self._q_of_scale[name_of(act_dq.inputs[1])]).scale.detach().abs().item())
        q_value, scale_value = input_at(node, 0), input_at(node, 1)
        scale = (s_x * s_w).astype(np.float32).reshape(const_of(scale_value).shape)
        bias = self.params[self._param_of[name_of(node.outputs[0])]].detach().numpy()
        ints = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        q_value.const_value = ir.tensor(ints, name=q_value.name)
        scale_value.const_value = ir.tensor(scale, name=scale_value.name)
