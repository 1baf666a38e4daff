"""The reference the station is measured against: the obvious Python pipeline for the same job, written plainly as a
Python user would (opencv-python, onnxruntime, pymodbus, sqlite3), run sequentially on one core.

For each frame: cv2.imread, crop the ROI, cvtColor to the model's colour order, resize with INTER_AREA (the
station's preprocessing contract, docs/MODELS.md), scale and normalise, session.run with one thread, PASS or REJECT
against the manifest's threshold, write the result block and the reject coil to a Modbus TCP server (pymodbus),
and insert one row per part into SQLite (committed per part).

Usage: python_pipeline.py '<json>' with keys frames (folder), model (version folder with manifest.toml and
model.onnx), roi ([x, y, w, h]), plc ("host:port" or null), db (SQLite path), parts (how many, 0: all files).
Prints one line: RESULT {"parts", "seconds", "cpu_s", "latency_ms": [...], "scores": [...]}.
"""

import json
import os
import sqlite3
import sys
import time
import tomllib

import cv2
import numpy as np
import onnxruntime as ort
from pymodbus.client import ModbusTcpClient


def main():
    args = json.loads(sys.argv[1])
    with open(os.path.join(args["model"], "manifest.toml"), "rb") as f:
        manifest = tomllib.load(f)
    inp = manifest["input"]
    threshold = manifest["threshold"]["value"]
    layout, color = inp["layout"], inp["color"]
    if layout == "NCHW":
        height, width = inp["shape"][2], inp["shape"][3]
    else:
        height, width = inp["shape"][1], inp["shape"][2]
    mean = np.array(inp["mean"], dtype=np.float32)
    std = np.array(inp["std"], dtype=np.float32)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.path.join(args["model"], "model.onnx"), options)
    score_name = manifest["output"]["score"]

    plc = None
    if args.get("plc"):
        host, port = args["plc"].rsplit(":", 1)
        plc = ModbusTcpClient(host, port=int(port))
        plc.connect()

    db = sqlite3.connect(args["db"])
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS parts (seq INTEGER, file TEXT, score REAL, verdict TEXT, decided_us INTEGER)"
    )

    files = []
    for root, _, names in os.walk(args["frames"]):
        files += [os.path.join(root, n) for n in names if n.endswith(".png")]
    files.sort(key=lambda p: (os.path.basename(p), p))
    if args.get("parts"):
        files = files[: args["parts"]]

    x, y, w, h = args["roi"]
    latencies, scores = [], []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for seq, path in enumerate(files, start=1):
        t0 = time.perf_counter()
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        crop = image[y : y + h, x : x + w]
        if color == "gray":
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        elif color == "rgb":
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        tensor = resized.astype(np.float32) * inp["scale"]
        if tensor.ndim == 2:
            tensor = tensor[:, :, None]
        tensor = (tensor - mean) / std
        if layout == "NCHW":
            tensor = tensor.transpose(2, 0, 1)
        tensor = tensor[None].astype(np.float32)
        score = float(session.run([score_name], {inp["name"]: tensor})[0].ravel()[0])
        reject = score > threshold
        if plc is not None:
            plc.write_registers(0, [8, 2 if reject else 1, seq & 0xFFFF, 0, seq & 0xFFFF])
            plc.write_coil(0, reject)
        db.execute(
            "INSERT INTO parts VALUES (?, ?, ?, ?, ?)",
            (seq, path, score, "REJECT" if reject else "PASS", int(time.time() * 1e6)),
        )
        db.commit()
        latencies.append((time.perf_counter() - t0) * 1e3)
        scores.append(score)
    seconds = time.perf_counter() - wall0
    cpu_s = time.process_time() - cpu0
    print("RESULT " + json.dumps({"parts": len(files), "seconds": seconds, "cpu_s": cpu_s,
                                  "latency_ms": latencies, "scores": scores}), flush=True)


if __name__ == "__main__":
    main()
