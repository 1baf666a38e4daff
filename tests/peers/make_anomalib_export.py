"""Makes the committed fixture tests/fixtures/anomalib-padim/: a REAL anomalib 2.x ONNX export, made by anomalib
itself, with anomalib's own scores of a few images to compare the station's against.

anomalib (with torch) is a ~6.5 GB install, so this runs once by hand, not in CI (docs/MODELS.md, "anomalib"):

    python3 -m venv /tmp/av && /tmp/av/bin/pip install anomalib==2.7.0 torch torchvision onnx
    station generate-parts --out /tmp/anomalib-parts --count 200 --seed 5 --defect-fraction 0.3
    /tmp/av/bin/python tests/peers/make_anomalib_export.py /tmp/anomalib-parts tests/fixtures/anomalib-padim

The model is the smallest real PaDiM: resnet18 `layer1`, 10 features. Nothing can be downloaded here, so the
backbone is randomly initialised (`pre_trained=False`): the export's format, pre- and post-processing are what
anomalib writes for any PaDiM; only its detection quality is not that of an ImageNet backbone.
"""
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from anomalib.data import Folder, PredictDataset
from anomalib.deploy import ExportType
from anomalib.engine import Engine
from anomalib.models import Padim

parts, out = Path(sys.argv[1]), Path(sys.argv[2])
torch.manual_seed(0)
size = (320, 320)  # the demo frames' size: the station feeds them whole, as anomalib saw them
work = Path(tempfile.mkdtemp())
data = Folder(
    name="parts",
    root=parts,
    normal_dir="good",
    abnormal_dir=["scratch", "spot", "crack"],
    train_batch_size=16,
    eval_batch_size=16,
    num_workers=0,
    seed=0,
)
model = Padim(backbone="resnet18", layers=["layer1"], pre_trained=False, n_features=10)
engine = Engine(max_epochs=1, accelerator="cpu", devices=1, logger=False, default_root_dir=work)
engine.fit(model=model, datamodule=data)
engine.test(model=model, datamodule=data)
exported = engine.export(model=model, export_type=ExportType.ONNX, export_root=work, input_size=size)
print("exported", exported)
out.mkdir(parents=True, exist_ok=True)
files = [exported] + [p for p in exported.parent.iterdir() if p.name != exported.name]
for f in files:
    shutil.copy(f, out / f.name)

# anomalib's own inference (torch, its pre- and post-processor) of a few images of each kind.
reference = {}
for kind, n in (("good", 12), ("scratch", 4), ("spot", 4), ("crack", 4)):
    dst = out / "images" / kind
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((parts / kind).glob("*.png"))[:n]:
        shutil.copy(p, dst / p.name)
    for batch in engine.predict(model=model, dataset=PredictDataset(path=dst, image_size=size)):
        for path, score in zip(batch.image_path, batch.pred_score.reshape(-1).tolist()):
            reference[f"{kind}/{Path(path).name}"] = score
(out / "anomalib_scores.json").write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")

sha = lambda f: hashlib.sha256(f.read_bytes()).hexdigest()
data_files = [f for f in out.iterdir() if f.name.startswith("model.onnx.")]
manifest = [
    "# A real anomalib 2.7.0 export (tests/peers/make_anomalib_export.py), unchanged: the station reads its",
    "# input, outputs and threshold from the graph (kind = \"anomalib\").",
    'name = "anomalib-padim"',
    'version = "1"',
    'description = "anomalib 2.7.0 PaDiM (resnet18 layer1, 10 features, random init), exported to ONNX by anomalib"',
    'kind = "anomalib"',
    f'sha256 = "{sha(out / "model.onnx")}"',
]
if data_files:
    manifest.append("")
    manifest.append("[external_data]  # the weights anomalib writes beside the graph")
    manifest += [f'"{f.name}" = "{sha(f)}"' for f in data_files]
(out / "manifest.toml").write_text("\n".join(manifest) + "\n")
print((out / "manifest.toml").read_text())

# The export run as an anomalib user runs it: onnxruntime on the image read by PIL, RGB in [0, 1], no resize
# (the export's input size is the images'). anomalib's torch scores above differ from these by up to 0.09: its
# torch pre-processor resizes 320 -> 256 with antialiasing, the exported graph without.
import numpy as np
import onnxruntime
from PIL import Image

session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
ort_scores = {}
for name in reference:
    image = np.asarray(Image.open(out / "images" / name).convert("RGB"), dtype=np.float32) / 255.0
    x = image.transpose(2, 0, 1)[None]
    ort_scores[name] = float(session.run(["pred_score"], {"input": x})[0].reshape(-1)[0])
(out / "onnxruntime_scores.json").write_text(json.dumps(ort_scores, indent=1, sort_keys=True) + "\n")
