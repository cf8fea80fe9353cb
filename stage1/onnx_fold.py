"""Fold the trunk's TensorFlow 'SAME' pads into its convolutions, in the float or quantised ONNX graph.

The exported trunk pads each strided convolution explicitly (stage1.mobilenet_v2: TF pads 0
top/left and 1 bottom/right), with the pad amounts computed from the input's shape at run
time. In the int8 QDQ graph every such Pad sits between a DequantizeLinear and a
QuantizeLinear, which keeps onnxruntime from fusing the convolution into one QLinearConv: the
tensors go back to float and back, and the Pads are copied. Measured on 2 cores, Pads,
(De)QuantizeLinear and their transposes took more time than all the convolutions.

The input size is fixed (224), so the pads are constants: this pass evaluates them once, moves
them into the convolution's own `pads` attribute and drops the Pad with its Q/DQ pair. A zero
pad of the float tensor and the convolution's zero padding (the zero point, in QLinearConv) are
the same values, so the outputs do not change (a test compares them). The float graph's Pads
feed their convolutions directly and fold the same way (the float32 trunk's 18 Pads and their
shape arithmetic: 7 images on one thread ~110 ms unfolded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def fold_static_pads(src: str | Path, dst: str | Path, image_size: int = 224) -> int:
    """Rewrite `src` into `dst`; -> how many Pads were folded. Needs the `export` extra (onnx)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    model = onnx.load(str(src))
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    pads = [n for n in g.node if n.op_type == "Pad"]
    if not pads:
        onnx.save(model, str(dst))
        return 0

    # The pad amounts, evaluated once: expose them as outputs and run the graph on one image.
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for p in pads:
        probe.graph.output.append(helper.make_tensor_value_info(p.input[1], onnx.TensorProto.INT64, None))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, image_size, image_size), np.float32)
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {g.input[0].name: x})))

    removed, folded = set(), 0
    for p in pads:
        amounts = values[p.input[1]].astype(int).tolist()  # [n0, c0, h0, w0, n1, c1, h1, w1]
        mode = next((a.s.decode() for a in p.attribute if a.name == "mode"), "constant")
        value_ok = len(p.input) < 3 or not p.input[2]
        q = consumers.get(p.output[0], [])
        if mode != "constant" or not value_ok or amounts[0] or amounts[1] or amounts[4] or amounts[5] or not q:
            continue
        if all(c.op_type == "Conv" for c in q):  # the float trunk: Pad -> Conv
            convs, dropped = q, [p]
        else:  # the int8 trunk: Pad -> QuantizeLinear -> DequantizeLinear -> Conv
            if len(q) != 1 or q[0].op_type != "QuantizeLinear":
                continue
            dq = consumers.get(q[0].output[0], [])
            if len(dq) != 1 or dq[0].op_type != "DequantizeLinear":
                continue
            convs = consumers.get(dq[0].output[0], [])
            if not convs or any(c.op_type != "Conv" for c in convs):
                continue
            # the float tensor before the Pad must itself come from a DequantizeLinear with the same
            # scale and zero point, so that dropping the Q/DQ pair changes no value
            before = producer.get(p.input[0])
            if before is None or before.op_type != "DequantizeLinear" or not _same_params(g, before, dq[0]):
                continue
            dropped = [p, q[0], dq[0]]
        for c in convs:
            attrs = {a.name: a for a in c.attribute}
            old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
            new = [old[0] + amounts[2], old[1] + amounts[3], old[2] + amounts[6], old[3] + amounts[7]]
            kept = [a for a in c.attribute if a.name not in ("pads", "auto_pad")]
            del c.attribute[:]
            c.attribute.extend(kept + [helper.make_attribute("pads", new)])
            c.input[0] = p.input[0]
        removed.update(id(n) for n in dropped)
        folded += 1
    keep = [n for n in g.node if id(n) not in removed]
    del g.node[:]
    g.node.extend(keep)
    _drop_dead(g)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return folded


def _same_params(g, a, b) -> bool:
    """Two (De)QuantizeLinear nodes with the same scale and zero point (by name or by value)."""
    from onnx import numpy_helper

    init = {t.name: t for t in g.initializer}
    for x, y in zip(a.input[1:], b.input[1:]):
        if x == y:
            continue
        if x not in init or y not in init:
            return False
        if not np.array_equal(numpy_helper.to_array(init[x]), numpy_helper.to_array(init[y])):
            return False
    return True


def _drop_dead(g) -> None:
    """Remove nodes and initialisers nothing reaches the outputs through (the shape arithmetic)."""
    needed = {o.name for o in g.output}
    live = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    live.reverse()
    del g.node[:]
    g.node.extend(live)
    inits = [t for t in g.initializer if t.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
