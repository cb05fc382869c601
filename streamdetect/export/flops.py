"""FLOP per window of an exported encoder, counted from its ONNX graph: what a stage's speed is compared with.

Only MatMul, Gemm and Conv are counted (2 FLOP per multiply-add); they are where a CLAP encoder's time goes.
Shapes come from onnx shape inference with the batch fixed at 1; an op whose shapes stay unknown is counted in
``unknown`` rather than guessed, so a reader sees how complete the figure is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx  # imported where used: only export needs it

COUNTED_OPS = ("MatMul", "Gemm", "Conv")


@dataclass
class GraphFlops:
    per_op: dict[str, int] = field(default_factory=dict)  # FLOP per window by op type
    unknown: list[str] = field(default_factory=list)  # names of counted-op nodes whose shapes were not inferred

    @property
    def total(self) -> int:
        return sum(self.per_op.values())


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape that inference found (weights included); symbolic dims leave a tensor out."""
    out = {}
    for info in (*model.graph.input, *model.graph.value_info, *model.graph.output):
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            out[info.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def count_flops(path: Path) -> GraphFlops:
    """FLOP of one window (batch 1) through the graph at ``path``."""
    import onnx

    model = onnx.load(str(path))
    del model.graph.value_info[:]  # stale annotations of the dynamo exporter (see precisions)
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = _shapes(model)
    result = GraphFlops()
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        a = shapes.get(node.input[0])
        b = shapes.get(node.input[1]) if len(node.input) > 1 else None
        y = shapes.get(node.output[0])
        if a is None or b is None or y is None:
            result.unknown.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":  # each output element: in_channels/group x kernel multiply-adds
            macs = int(np.prod(y)) * int(np.prod(b[1:]))
        elif node.op_type == "Gemm":
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            macs = int(np.prod(y)) * (a[0] if trans_a else a[-1])
        else:  # MatMul: y = a @ b with broadcasting; the shared dimension is a's last
            macs = int(np.prod(y)) * a[-1]
        result.per_op[node.op_type] = result.per_op.get(node.op_type, 0) + 2 * macs
    return result
