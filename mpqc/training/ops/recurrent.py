"""Recurrent layers (LSTM, GRU) written out step by step, in ONNX's gate orders and with
its default activations, so their weights stay frozen while the layers around them train."""

from __future__ import annotations

import torch
from onnx_ir import Node

from mpqc.errors import ModelError
from mpqc.training.ops.registry import Inputs, arg, attr_int, attr_str, opt, register

__all__: list[str] = []


def _check(node: Node, defaults: list[str], seq_len: int, lens: torch.Tensor | None) -> None:
    activations = node.attributes.get("activations")
    if activations is not None and [a.lower() for a in activations.as_strings()] not in (
        [d.lower() for d in defaults],
        [d.lower() for d in defaults * 2],
    ):
        raise ModelError(f"{node.op_type} {node.name}: only the default activations are supported in QAT")
    if node.attributes.get("clip") is not None or attr_int(node, "input_forget", 0):
        raise ModelError(f"{node.op_type} {node.name}: clip and input_forget are not supported in QAT")
    if lens is not None and bool((lens != seq_len).any()):
        raise ModelError(f"{node.op_type} {node.name}: sequences of different lengths are not supported in QAT")


def _directions(node: Node) -> list[bool]:
    """Per direction: whether it runs backwards in time."""
    direction = attr_str(node, "direction", "forward")
    return {"forward": [False], "reverse": [True], "bidirectional": [False, True]}[direction]


@register("LSTM")
def _lstm(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, w, r = arg(node, xs, 0), arg(node, xs, 1), arg(node, xs, 2)
    b, lens, h0, c0, peep = opt(xs, 3), opt(xs, 4), opt(xs, 5), opt(xs, 6), opt(xs, 7)
    batch_first = bool(attr_int(node, "layout", 0))
    if batch_first:
        x = x.transpose(0, 1)
    steps, batch = x.shape[0], x.shape[1]
    hidden = r.shape[-1]
    _check(node, ["Sigmoid", "Tanh", "Tanh"], steps, lens)
    ys, hs, cs = [], [], []
    for d, backwards in enumerate(_directions(node)):
        bias = b[d] if b is not None else torch.zeros(8 * hidden, dtype=x.dtype)
        wb, rb = bias[: 4 * hidden], bias[4 * hidden :]
        h = h0[d] if h0 is not None else torch.zeros(batch, hidden, dtype=x.dtype)
        c = c0[d] if c0 is not None else torch.zeros(batch, hidden, dtype=x.dtype)
        p = peep[d] if peep is not None else None
        gates_x = x @ w[d].T + wb  # all steps at once
        outputs = []
        order = range(steps - 1, -1, -1) if backwards else range(steps)
        for t in order:
            gates = gates_x[t] + h @ r[d].T + rb
            i, o, f, g = gates.split(hidden, dim=-1)  # ONNX order: input, output, forget, cell
            if p is not None:
                i = i + p[:hidden] * c
                f = f + p[2 * hidden :] * c
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
            c = f * c + i * g
            if p is not None:
                o = o + p[hidden : 2 * hidden] * c
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        if backwards:
            outputs.reverse()
        ys.append(torch.stack(outputs))
        hs.append(h)
        cs.append(c)
    y = torch.stack(ys, dim=1)  # [seq, directions, batch, hidden]
    y_h, y_c = torch.stack(hs), torch.stack(cs)
    if batch_first:
        y, y_h, y_c = y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
    return [y, y_h, y_c][: len(node.outputs)]


@register("GRU")
def _gru(node: Node, xs: Inputs) -> list[torch.Tensor]:
    x, w, r = arg(node, xs, 0), arg(node, xs, 1), arg(node, xs, 2)
    b, lens, h0 = opt(xs, 3), opt(xs, 4), opt(xs, 5)
    batch_first = bool(attr_int(node, "layout", 0))
    if batch_first:
        x = x.transpose(0, 1)
    steps, batch = x.shape[0], x.shape[1]
    hidden = r.shape[-1]
    _check(node, ["Sigmoid", "Tanh"], steps, lens)
    before_reset = bool(attr_int(node, "linear_before_reset", 0))
    ys, hs = [], []
    for d, backwards in enumerate(_directions(node)):
        bias = b[d] if b is not None else torch.zeros(6 * hidden, dtype=x.dtype)
        wb, rb = bias[: 3 * hidden], bias[3 * hidden :]
        h = h0[d] if h0 is not None else torch.zeros(batch, hidden, dtype=x.dtype)
        gates_x = x @ w[d].T + wb
        rz, rr, rh = r[d].split(hidden, dim=0)
        rbz, rbr, rbh = rb.split(hidden)
        outputs = []
        for t in range(steps - 1, -1, -1) if backwards else range(steps):
            xz, xr, xh = gates_x[t].split(hidden, dim=-1)  # ONNX order: update, reset, hidden
            z = torch.sigmoid(xz + h @ rz.T + rbz)
            reset = torch.sigmoid(xr + h @ rr.T + rbr)
            if before_reset:
                candidate = torch.tanh(xh + reset * (h @ rh.T + rbh))
            else:
                candidate = torch.tanh(xh + (reset * h) @ rh.T + rbh)
            h = (1 - z) * candidate + z * h
            outputs.append(h)
        if backwards:
            outputs.reverse()
        ys.append(torch.stack(outputs))
        hs.append(h)
    y, y_h = torch.stack(ys, dim=1), torch.stack(hs)
    if batch_first:
        y, y_h = y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
    return [y, y_h][: len(node.outputs)]
