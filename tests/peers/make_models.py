"""Builds ONNX models with special behaviour for the station's fail-safe tests, each as a model folder
(model.onnx + manifest.toml with the real sha256):

  error OUT   loads fine (input [N,1,256,256]) but fails at every run: a Reshape to [7, -1] that 65536 pixels
              cannot satisfy, so ONNX Runtime raises an error inside session.run
  slow OUT    a correct-interface model that takes far longer than a tight deadline: four 1024x1024 MatMuls
  anomalib OUT  exactly anomalib 2.x's ONNX export interface: one input `input` [N,3,256,256] of RGB in [0,1]
              (normalisation inside the graph), outputs `pred_score` [N], `pred_label` [N] (bool), `anomaly_map`
              [N,1,256,256] and `pred_mask` [N,1,256,256] (bool), scores normalised so 0.5 is the threshold; a
              local-contrast detector. Its manifest is anomalib-minimal: name, version, kind, sha256
"""

import hashlib
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MANIFEST = """name = "{name}"
version = "1"
sha256 = "{sha}"
[input]
name = "image"
shape = [1, 1, 256, 256]
layout = "NCHW"
color = "gray"
scale = 0.00392156862745098
mean = [0.5]
std = [0.25]
[output]
score = "score"
[threshold]
value = 0.5
method = "test model"
"""


def save(graph, name, out):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(data)
    (out / "manifest.toml").write_text(MANIFEST.format(name=name, sha=hashlib.sha256(data).hexdigest()))


def error_model(out):
    shape = numpy_helper.from_array(np.array([7, -1], dtype=np.int64), "bad_shape")
    nodes = [
        helper.make_node("Reshape", ["image", "bad_shape"], ["reshaped"]),
        helper.make_node("ReduceMax", ["reshaped"], ["score"], axes=[0, 1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "always_errors",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 256, 256])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [])],
        [shape],
    )
    save(graph, "always-errors", out)


def slow_model(out):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(np.array([256, 256], dtype=np.int64), "square"),
        numpy_helper.from_array(np.array([4, 4], dtype=np.int64), "tiles"),
        numpy_helper.from_array((rng.standard_normal((1024, 1024)) / 1024).astype(np.float32), "w"),
    ]
    nodes = [
        helper.make_node("Reshape", ["image", "square"], ["m0"]),
        helper.make_node("Tile", ["m0", "tiles"], ["t0"]),
    ]
    last = "t0"
    for i in range(4):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"t{i + 1}"]))
        last = f"t{i + 1}"
    nodes.append(helper.make_node("ReduceMax", [last], ["peak"], keepdims=0))
    nodes.append(helper.make_node("Reshape", ["peak", "one"], ["score"]))
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one"))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 256, 256])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1])],
        inits,
    )
    save(graph, "slow", out)


def anomalib_model(out, batch="N"):
    c = lambda name, value: numpy_helper.from_array(np.array(value, dtype=np.float32), name)
    i = lambda name, value: numpy_helper.from_array(np.array(value, dtype=np.int64), name)
    inits = [
        c("mean", [0.485, 0.456, 0.406]), c("std", [0.229, 0.224, 0.225]),
        c("offset", 0.176), c("gain", 40.0), c("half", 0.5), i("axes_c", [1]),
    ]
    for t in inits[:2]:
        t.dims[:] = [1, 3, 1, 1]
    nodes = [
        # anomalib puts its normalisation inside the graph
        helper.make_node("Sub", ["input", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normed"]),
        helper.make_node("ReduceMean", ["normed"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["local"], kernel_shape=[11, 11], pads=[5, 5, 5, 5],
                         count_include_pad=0),
        helper.make_node("Sub", ["gray", "local"], ["detail"]),
        helper.make_node("Abs", ["detail"], ["contrast"]),
        helper.make_node("AveragePool", ["contrast"], ["energy"], kernel_shape=[5, 5], pads=[2, 2, 2, 2],
                         count_include_pad=0),
        helper.make_node("Sub", ["energy", "offset"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["pred_score"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Greater", ["pred_score", "half"], ["pred_label"]),
        helper.make_node("Greater", ["anomaly_map", "half"], ["pred_mask"]),
    ]
    graph = helper.make_graph(
        nodes,
        "anomalib_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 256, 256])],
        [
            helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info("pred_label", TensorProto.BOOL, [batch]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [batch, 1, 256, 256]),
            helper.make_tensor_value_info("pred_mask", TensorProto.BOOL, [batch, 1, 256, 256]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(data)
    (out / "manifest.toml").write_text(
        f'name = "anomalib-like"\nversion = "1"\nkind = "anomalib"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\n'
    )


if __name__ == "__main__":
    kind, out = sys.argv[1], sys.argv[2]
    {
        "error": error_model,
        "slow": slow_model,
        "anomalib": anomalib_model,
        # anomalib's PatchCore exports are fixed at batch 2 (docs/MODELS.md)
        "anomalib-batch2": lambda out: anomalib_model(out, batch=2),
    }[kind](out)
    print(f"wrote {kind} model to {out}")
