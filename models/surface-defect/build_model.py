"""Builds the demo defect model `models/surface-defect/<version>/` (model.onnx + manifest.toml).

A classic image-processing detector expressed as an ONNX graph, no training: a band-pass filter (difference of
two Gaussian blurs, separable convolutions on reflect-padded input) keeps structures of scratch/spot/crack size
and removes both the fine grain of the surface and its slow shading; the magnitude is averaged over a small window
to get the anomaly map (in gray levels of local contrast), and the image score is the map's maximum.

Input  `image`        [1, 1, 256, 256] float32, gray, (pixel / 255 - 0.5) / 0.25 (the manifest says so)
Output `anomaly_map`  [1, 1, 256, 256] float32, gray levels
Output `score`        [1]              float32, gray levels; the part is rejected above the threshold

Run from the repository root with the project's virtualenv: `.local/venv/bin/python models/surface-defect/build_model.py`
The threshold was chosen on the synthetic conveyor (see docs/MODELS.md and `station run --max-parts 500`).
"""

import argparse
import hashlib
import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 256
MEAN, STD = 0.5, 0.25
SIGMA_FINE, SIGMA_COARSE, POOL = 1.0, 5.0, 11
THRESHOLD = 4.8


def gaussian(sigma):
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).astype(np.float32), radius


def build():
    nodes, inits = [], []

    def blur(inp, sigma, name):
        k, r = gaussian(sigma)
        inits.append(numpy_helper.from_array(np.array([0, 0, r, r, 0, 0, r, r], dtype=np.int64), f"{name}_pads"))
        inits.append(numpy_helper.from_array(k.reshape(1, 1, 1, -1), f"{name}_kx"))
        inits.append(numpy_helper.from_array(k.reshape(1, 1, -1, 1), f"{name}_ky"))
        nodes.append(helper.make_node("Pad", [inp, f"{name}_pads"], [f"{name}_padded"], mode="reflect"))
        nodes.append(helper.make_node("Conv", [f"{name}_padded", f"{name}_kx"], [f"{name}_x"]))
        nodes.append(helper.make_node("Conv", [f"{name}_x", f"{name}_ky"], [name]))
        return name

    fine = blur("image", SIGMA_FINE, "fine")
    coarse = blur("image", SIGMA_COARSE, "coarse")
    # Back to gray levels: one normalised unit is STD * 255 gray levels.
    inits.append(numpy_helper.from_array(np.array(STD * 255.0, dtype=np.float32), "to_gray"))
    nodes += [
        helper.make_node("Sub", [fine, coarse], ["band"]),
        helper.make_node("Abs", ["band"], ["magnitude"]),
        helper.make_node(
            "AveragePool",
            ["magnitude"],
            ["pooled"],
            kernel_shape=[POOL, POOL],
            pads=[POOL // 2] * 4,
            count_include_pad=0,
        ),
        helper.make_node("Mul", ["pooled", "to_gray"], ["anomaly_map"]),
        helper.make_node("ReduceMax", ["anomaly_map"], ["score"], axes=[1, 2, 3], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "surface_defect_dog",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, [1, 1, SIZE, SIZE]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="inspection-station")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


MANIFEST = """# Demo defect model: difference-of-Gaussians band-pass detector (built by ../build_model.py; do not edit by hand).
name = "surface-defect"
version = "{version}"
description = "Band-pass (DoG sigma {fine}/{coarse} px, {pool}x{pool} mean) local-contrast detector for scratches, spots and cracks; score in gray levels"
sha256 = "{sha256}"

[input]
name = "image"
shape = [1, 1, {size}, {size}]
layout = "NCHW"
color = "gray"
scale = 0.00392156862745098
mean = [{mean}]
std = [{std}]

[output]
score = "score"
anomaly_map = "anomaly_map"

[threshold]
value = {threshold}
method = "{method}"
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", default="1")
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    parser.add_argument(
        "--method",
        default="midpoint of the good parts' max score (4.34) and the defective parts' min score (5.32) on 600 synthetic parts (station generate-parts --seed 7 --defect-fraction 0.3); held-out check: station run on seed 11",
    )
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args()
    out = pathlib.Path(args.out) / args.version
    out.mkdir(parents=True, exist_ok=True)
    data = build().SerializeToString()
    (out / "model.onnx").write_bytes(data)
    (out / "manifest.toml").write_text(
        MANIFEST.format(
            version=args.version,
            fine=SIGMA_FINE,
            coarse=SIGMA_COARSE,
            pool=POOL,
            sha256=hashlib.sha256(data).hexdigest(),
            size=SIZE,
            mean=MEAN,
            std=STD,
            threshold=args.threshold,
            method=args.method,
        )
    )
    print(f"wrote {out / 'model.onnx'} ({len(data)} bytes) and manifest.toml")


if __name__ == "__main__":
    main()
