"""The QDQ graph of a scheme as a trainable torch module.

Built from the very graph ONNX Runtime runs: every QuantizeLinear becomes a `FakeQuant`
with a learnable scale (shared where the graph shares the scale initializer), the paired
DequantizeLinear passes through, weight DequantizeLinear nodes fake-quantize a float latent
weight (initialised from the float model), and everything else runs as its torch twin.
`write_back` puts the trained weights and scales into the same graph."""

from __future__ import annotations

import re

import ml_dtypes  # noqa: F401  (registers int4/int2 numpy types the IR hands over)
import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from mpqc.qat.fakequant import FakeQuant
from mpqc.qat.ops import run_op

__all__ = ["TrainableGraph"]

_SAFE = re.compile(r"[^0-9A-Za-z_]")


def _safe(name: str) -> str:
    return "p_" + _SAFE.sub("_", name)


def _role(node: ir.Node) -> str:
    return node.metadata_props.get("mpqc.role", "")


def _meta_int(node: ir.Node, key: str) -> int:
    return int(node.metadata_props[key])


class TrainableGraph(nn.Module):
    def __init__(self, qdq: ir.Model, float_weights: dict[str, np.ndarray]) -> None:
        """`float_weights`: the float model's initializers by name (latent weights start there)."""
        super().__init__()
        self.graph = qdq.graph
        self.nodes = list(self.graph)
        self.input_names = [v.name for v in self.graph.inputs if not v.is_initializer()]
        self.output_names = [v.name for v in self.graph.outputs]
        self.params = nn.ParameterDict()
        self.quantizers = nn.ModuleDict()
        self._constants: dict[str, torch.Tensor] = {}
        self._param_of: dict[str, str] = {}  # graph value name -> parameter key
        self._layer_weight: dict[str, str] = {}  # layer -> parameter key of its latent weight
        self._layer_bias: dict[str, str] = {}
        self._q_of_scale: dict[str, str] = {}  # scale initializer -> quantizer key
        self._bias_nodes: list[ir.Node] = []
        self._bias_scale: dict[str, tuple[str, str]] = {}  # bias value -> (activation scale, layer)
        self._weight_nodes: list[ir.Node] = []
        layer_ops = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
        for node in self.nodes:
            role = _role(node)
            if node.op_type == "DequantizeLinear" and role == "weight":
                self._add_weight(node, float_weights)
            elif node.op_type == "DequantizeLinear" and role == "bias":
                self._add_bias(node, float_weights)
            elif node.op_type == "QuantizeLinear" and role in ("activation", "container"):
                self._add_activation(node)
            elif node.op_type in layer_ops:
                for value in node.inputs[1:]:  # float layers: weights and biases train too
                    if value is not None and value.is_initializer() and value.const_value is not None:
                        if value.const_value.dtype == ir.DataType.FLOAT and value.name not in self._param_of:
                            key = _safe(value.name)
                            self.params[key] = nn.Parameter(torch.from_numpy(value.const_value.numpy().copy()))
                            self._param_of[value.name] = key

    # -- construction ----------------------------------------------------------------------
    def _add_weight(self, node: ir.Node, float_weights: dict[str, np.ndarray]) -> None:
        layer = node.metadata_props["mpqc.layer"]
        source = node.metadata_props.get("mpqc.source", "")
        q, scale, zero = node.inputs[0], node.inputs[1], node.inputs[2]
        latent = float_weights.get(source)
        if latent is None:  # fall back to the dequantized values
            latent = (q.const_value.numpy().astype(np.float32) - _bshape(zero, node, q)) * _bshape(scale, node, q)
        key = _safe(f"{layer}_weight")
        self.params[key] = nn.Parameter(torch.from_numpy(np.asarray(latent, np.float32).copy()))
        axis = node.attributes.get_int("axis", 1) if scale.const_value.numpy().ndim == 1 else None
        if axis is not None:
            axis %= q.const_value.numpy().ndim
        self.quantizers[key] = FakeQuant(
            torch.from_numpy(scale.const_value.numpy().astype(np.float32)),
            torch.from_numpy(zero.const_value.numpy().astype(np.float32)),
            _meta_int(node, "mpqc.qmin"),
            _meta_int(node, "mpqc.qmax"),
            axis,
        )
        self._layer_weight[layer] = key
        self._param_of[node.outputs[0].name] = key
        self._weight_nodes.append(node)

    def _add_bias(self, node: ir.Node, float_weights: dict[str, np.ndarray]) -> None:
        layer = node.metadata_props["mpqc.layer"]
        q, scale = node.inputs[0], node.inputs[1]
        source = node.metadata_props.get("mpqc.source", "")
        bias = float_weights.get(source)
        if bias is None:
            bias = q.const_value.numpy().astype(np.float32) * scale.const_value.numpy().astype(np.float32)
        key = _safe(f"{layer}_bias")
        self.params[key] = nn.Parameter(torch.from_numpy(np.asarray(bias, np.float32).copy()))
        self._layer_bias[layer] = key
        self._param_of[node.outputs[0].name] = key
        self._bias_nodes.append(node)
        layer_node = node.outputs[0].uses()[0].node
        act_dq = layer_node.inputs[0].producer()
        if act_dq is not None and act_dq.op_type == "DequantizeLinear":
            self._bias_scale[node.outputs[0].name] = (act_dq.inputs[1].name, layer)

    def _add_activation(self, node: ir.Node) -> None:
        scale, zero = node.inputs[1], node.inputs[2]
        key = _safe(f"q_{scale.name}")
        if key not in self.quantizers:
            self.quantizers[key] = FakeQuant(
                torch.from_numpy(np.asarray(scale.const_value.numpy(), np.float32)),
                torch.from_numpy(np.asarray(zero.const_value.numpy()).astype(np.float32)),
                _meta_int(node, "mpqc.qmin"),
                _meta_int(node, "mpqc.qmax"),
                None,
            )
            self._q_of_scale[scale.name] = key

    # -- running ---------------------------------------------------------------------------
    def _constant(self, value: ir.Value) -> torch.Tensor:
        name = value.name or ""
        if name not in self._constants:
            array = np.asarray(value.const_value.numpy())
            if array.dtype.kind in "iub" and array.dtype != np.bool_:
                array = array.astype(np.int64)
            self._constants[name] = torch.from_numpy(array.copy())
        return self._constants[name]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = dict(zip(self.input_names, inputs))
        for node in self.nodes:
            out = node.outputs[0].name
            if out in self._param_of:  # weight/bias DequantizeLinear: fake-quantized latent
                key = self._param_of[out]
                if key in self.quantizers:
                    env[out] = self.quantizers[key](self.params[key])
                elif out in self._bias_scale:
                    env[out] = self._int32_bias(out, self.params[key])
                else:
                    env[out] = self.params[key]
                continue
            if node.op_type == "QuantizeLinear":
                env[out] = self.quantizers[self._q_of_scale[node.inputs[1].name]](env[node.inputs[0].name])
                continue
            if (
                node.op_type == "DequantizeLinear"
                and node.inputs[0].producer() is not None
                and node.inputs[0].producer().op_type == "QuantizeLinear"
            ):
                env[out] = env[node.inputs[0].name]
                continue
            args = []
            for value in node.inputs:
                if value is None or not value.name:
                    args.append(None)
                elif value.name in self._param_of and value.name not in env:
                    args.append(self.params[self._param_of[value.name]])
                elif value.name in env:
                    args.append(env[value.name])
                else:
                    args.append(self._constant(value))
            for value, result in zip(node.outputs, run_op(node, args)):
                env[value.name] = result
        return env[self.output_names[0]]

    def _int32_bias(self, value: str, bias: torch.Tensor) -> torch.Tensor:
        """The bias as ONNX Runtime sees it: int32 at scale s_x * s_w (straight-through)."""
        act_scale, layer = self._bias_scale[value]
        s_x = self.quantizers[self._q_of_scale[act_scale]].scale.abs().reshape(())
        s_w = self.quantizers[self._layer_weight[layer]].scale.abs()
        step = (s_x * s_w).reshape(-1) if s_w.ndim else s_x * s_w
        scaled = bias / step
        return ((torch.round(scaled) - scaled).detach() + scaled) * step

    # -- write-back ------------------------------------------------------------------------
    @torch.no_grad()
    def write_back(self) -> None:
        """Trained weights, scales and biases into the graph this module was built from."""
        for node in self._weight_nodes:
            key = self._param_of[node.outputs[0].name]
            fq: FakeQuant = self.quantizers[key]  # type: ignore[assignment]
            q_value, scale_value = node.inputs[0], node.inputs[1]
            ints = fq.integers(self.params[key]).numpy()
            dtype = q_value.const_value.numpy().dtype
            q_value.const_value = ir.tensor(ints.astype(np.int32).astype(dtype), name=q_value.name)
            scale_value.const_value = ir.tensor(
                fq.scale.detach().abs().numpy().astype(np.float32), name=scale_value.name
            )
        for scale_name, key in self._q_of_scale.items():
            fq = self.quantizers[key]
            value = self._find_initializer(scale_name)
            value.const_value = ir.tensor(
                fq.scale.detach().abs().reshape(value.const_value.numpy().shape).numpy().astype(np.float32),
                name=scale_name,
            )
        for node in self._bias_nodes:
            self._write_bias(node)
        for name, key in self._param_of.items():
            value = self.graph.initializers.get(name)
            if value is not None and value.const_value is not None and value.const_value.dtype == ir.DataType.FLOAT:
                value.const_value = ir.tensor(self.params[key].detach().numpy().astype(np.float32), name=name)

    def _find_initializer(self, name: str) -> ir.Value:
        return self.graph.initializers[name]

    def _write_bias(self, node: ir.Node) -> None:
        """int32 bias at the trained s_x * s_w."""
        layer_node = node.outputs[0].uses()[0].node
        act_dq = layer_node.inputs[0].producer()
        weight_key = self._layer_weight[node.metadata_props["mpqc.layer"]]
        s_w = self.quantizers[weight_key].scale.detach().abs().numpy().astype(np.float32)
        s_x = np.float32(self.quantizers[self._q_of_scale[act_dq.inputs[1].name]].scale.detach().abs().item())
        scale = (s_x * s_w).astype(np.float32).reshape(node.inputs[1].const_value.numpy().shape)
        bias = self.params[self._param_of[node.outputs[0].name]].detach().numpy()
        ints = np.clip(np.rint(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
        node.inputs[0].const_value = ir.tensor(ints, name=node.inputs[0].name)
        node.inputs[1].const_value = ir.tensor(scale, name=node.inputs[1].name)


def _bshape(value: ir.Value, node: ir.Node, q: ir.Value) -> np.ndarray:
    array = np.asarray(value.const_value.numpy()).astype(np.float32)
    if array.ndim == 0:
        return array
    shape = [1] * q.const_value.numpy().ndim
    shape[node.attributes.get_int("axis", 1)] = -1
    return array.reshape(shape)
