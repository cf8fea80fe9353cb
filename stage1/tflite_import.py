"""Import Google Coral's ImageNet MobileNetV2 1.0/224 TFLite files into `stage1.mobilenet_v2`.

Both files in ../shared/weights/mobilenet_imagenet_tflite/ work: the slim one (uint8, one scale
per tensor) and the TF2 one (int8, one scale per output channel). TFLite has folded batch norm
into every convolution, so each conv op carries (weight, bias) and maps one-to-one, in graph
order, onto `MobileNetV2.conv_layers()`; the last conv op (1x1 over the pooled 1280 features) is
the ImageNet classifier. Tensors are dequantised as scale * (q - zero_point) along the file's
`quantized_dimension`.

Only `agpis weights import` and its test use this module (it needs ai-edge-litert, a dev
dependency); the service loads the safetensors file it writes.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from stage1.mobilenet_v2 import MobileNetV2, MobileNetV2Config

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
DEFAULT_FILE = "tf2_mobilenet_v2_1.0_224_ptq.tflite"  # per-channel int8: the finer quantisation


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _interpreter(path: str | Path, preserve_all: bool = False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:  # a dev dependency: only the import needs it
        raise SystemExit("importing TFLite weights needs ai-edge-litert (pip install '.[dev]')") from e
    kwargs = {}
    if preserve_all:  # intermediate tensors are readable only with the built-in kernels
        kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                  "experimental_preserve_all_tensors": True}
    it = Interpreter(model_path=str(path), **kwargs)
    it.allocate_tensors()
    return it


def _dequantise(q: np.ndarray, detail: dict) -> np.ndarray:
    qp = detail["quantization_parameters"]
    scales, zps, axis = qp["scales"], qp["zero_points"], qp["quantized_dimension"]
    if len(scales) == 0:
        return q.astype(np.float32)
    shape = [1] * q.ndim
    if len(scales) > 1:
        shape[axis] = len(scales)
    return (scales.reshape(shape) * (q.astype(np.float32) - zps.reshape(shape))).astype(np.float32)


def read_convs(path: str | Path) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], tuple[float, int]]:
    """[(op name, weight (TFLite layout, float32), bias float32)] in graph order, and the input
    quantisation (scale, zero point) that maps the file's uint8 input to the network's floats."""
    it = _interpreter(path)
    details = {t["index"]: t for t in it.get_tensor_details()}
    convs = []
    for op in it._get_ops_details():
        if op["op_name"] not in CONV_OPS:
            continue
        _, wi, bi = op["inputs"]
        convs.append((op["op_name"], _dequantise(it.get_tensor(wi), details[wi]),
                      _dequantise(it.get_tensor(bi), details[bi])))
    scale, zp = it.get_input_details()[0]["quantization"]
    return convs, (float(scale), int(zp))


def import_mobilenet_v2(path: str | Path) -> tuple[MobileNetV2, tuple[float, int]]:
    """A float MobileNetV2 holding the file's dequantised weights, and the input quantisation."""
    convs, input_q = read_convs(path)
    model = MobileNetV2(MobileNetV2Config())
    layers = model.conv_layers()
    if len(convs) != len(layers) + 1:
        raise ValueError(f"{path}: {len(convs)} conv ops, expected {len(layers) + 1} for MobileNetV2 1.0")
    with torch.no_grad():
        for (op, w, b), layer in zip(convs, layers):
            depthwise = layer.conv.groups > 1
            if (op == "DEPTHWISE_CONV_2D") != depthwise:
                raise ValueError(f"{path}: op {op} does not match layer {layer.conv}")
            # TFLite conv [O, H, W, I] -> torch [O, I, H, W]; depthwise [1, H, W, C] -> [C, 1, H, W].
            wt = torch.from_numpy(w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2))
            assert wt.shape == layer.conv.weight.shape, (op, wt.shape, layer.conv.weight.shape)
            assert b.shape == tuple(layer.conv.bias.shape), (op, b.shape)
            layer.conv.weight.copy_(wt)
            layer.conv.bias.copy_(torch.from_numpy(b))
        _, w, b = convs[-1]  # the classifier: a 1x1 conv [1001, 1, 1, 1280] over the pooled features
        w = torch.from_numpy(w.reshape(w.shape[0], -1))
        assert w.shape == model.classifier.weight.shape, w.shape
        model.classifier.weight.copy_(w)
        model.classifier.bias.copy_(torch.from_numpy(b))
    return model.eval(), input_q


def tflite_predict(path: str | Path, images_uint8: np.ndarray) -> np.ndarray:
    """The TFLite interpreter's class probabilities (N, 1001) for (N, 224, 224, 3) uint8 images."""
    it = _interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    probs = []
    for im in images_uint8:
        it.set_tensor(inp["index"], im[None].astype(inp["dtype"]))
        it.invoke()
        q = it.get_tensor(out["index"]).astype(np.float32)
        scale, zp = out["quantization"]
        probs.append(scale * (q[0] - zp) if scale else q[0])
    return np.stack(probs)


class _Trunk(torch.nn.Module):
    """The exported graph: image -> (patch map, final map); the ImageNet classifier stays out."""

    def __init__(self, model: MobileNetV2):
        super().__init__()
        self.model = model

    def forward(self, x):  # (B, 3, 224, 224)
        f = self.model.forward_features(x)
        return f["patch"], f["final"]  # (B, 576, 14, 14), (B, 1280, 7, 7)


def export_f32_onnx(model: MobileNetV2, out_path: Path, fold: bool = True) -> None:
    """Export the trunk to ONNX in float32 (the default serving trunk: the same maps on every CPU,
    stage1/backbone.py says why). Needs the `export` extra (onnxscript); the result needs only
    onnxruntime. The input size is fixed, so the TF 'SAME' pads are constants: folded into the
    convolutions (stage1/onnx_fold.py), unless `fold` is False (the int8 export quantises first)."""
    import tempfile

    from stage1.onnx_fold import fold_static_pads

    size = model.config.image_size
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        torch.onnx.export(_Trunk(model).eval(), (torch.zeros(1, 3, size, size),), str(raw),
                          input_names=["x"], output_names=["patch", "final"],
                          dynamic_axes={"x": {0: "batch"}, "patch": {0: "batch"}, "final": {0: "batch"}},
                          opset_version=17, dynamo=False)
        if fold:
            fold_static_pads(raw, out_path, size)  # the pads' shape arithmetic and Pads into the convs
        else:
            shutil.copyfile(raw, out_path)


def export_int8_onnx(model: MobileNetV2, out_path: Path, calibration: np.ndarray) -> None:
    """Export the trunk to ONNX and quantise it statically (QDQ: per-channel int8 weights,
    uint8 activations with MinMax ranges from `calibration`, (N, 3, 224, 224) network inputs).
    Needs the `export` extra (onnx, onnxscript); the result needs only onnxruntime."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from stage1.onnx_fold import fold_static_pads

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i:i + 1] for i in range(len(calibration)))

        def get_next(self):
            x = next(self.batches, None)
            return None if x is None else {"x": np.ascontiguousarray(x, dtype=np.float32)}

    size = model.config.image_size
    with tempfile.TemporaryDirectory() as tmp:
        f32, pre = Path(tmp) / "f32.onnx", Path(tmp) / "pre.onnx"
        export_f32_onnx(model, f32, fold=False)
        quant_pre_process(str(f32), str(pre))
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        # the TF 'SAME' pads into the convolutions: same outputs, 2x faster (stage1/onnx_fold.py)
        fold_static_pads(quantized, out_path, size)


CARD = """# ImageNet MobileNetV2 1.0/224 (imported base of stage 1)

Written by `agpis weights import` (stage1/tflite_import.py); do not edit by hand.

- **Source**: `{source}` from Google Coral's ImageNet models (`../shared/{tflite_dir}/`),
  sha256 `{source_sha256}`.
- **Licence**: Apache License 2.0. Copyright Google LLC. These files are a derivative work of
  Google's MobileNetV2 weights (converted: dequantised, re-exported to ONNX, TF pads folded into the convolutions);
  the licence text is at https://www.apache.org/licenses/LICENSE-2.0 and applies to the
  weight files in this directory.
- **Conversion**: TFLite conv ops in graph order -> `stage1.mobilenet_v2.MobileNetV2`
  (batch norm already folded into conv biases, TensorFlow SAME padding), tensors dequantised
  as scale * (q - zero_point) per channel.
- **Files**:
  - `mobilenet_v2.fp16.safetensors` (sha256 `{st_sha256}`): the float PyTorch weights
    (float16 storage), including the 1001-class ImageNet classifier.
  - `{onnx_file}` (sha256 `{onnx_sha256}`): the serving trunk (image -> patch map
    576x14x14 and final map 1280x7x7), ONNX; quantisation: {quantisation}.
  - `backbone.json`: preprocessing and provenance, read by `stage1.backbone.Backbone`.
- **Checks at import time** ({n_check} real photos from ../shared, 224x224):
  - top-1 of the PyTorch model vs the TFLite interpreter: {top1_agree}/{n_check} agree;
  - cosine between PyTorch (float) and the ONNX Runtime trunk, pooled final features:
    mean {cos_final:.4f}, min {cos_final_min:.4f}; patch map cosine mean {cos_patch:.4f}.
"""


def calibration_photos(shared: Path) -> list[Path]:
    """A fixed, deterministic mix of real photos: in-store (grocery train), catalogue shots on
    white (grocery iconic), Amazon listings, JD listing images."""
    d = shared / "data"
    train = sorted((d / "grocery/dataset/train").rglob("*.jpg"))[::40]
    iconic = sorted((d / "grocery/dataset/iconic-images-and-descriptions").rglob("*.jpg"))[::2]
    return train + iconic + sorted((d / "abo_samples").rglob("*.jpg")) + sorted((d / "jd_muisc_examples").glob("*.jpg"))


def check_photos(shared: Path) -> list[Path]:
    """Photos for the top-1 agreement check: never the calibration photos."""
    d = shared / "data"
    return sorted((d / "grocery/dataset/val").rglob("*.jpg"))[::3]


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    from PIL import Image

    im = Image.open(path).convert("RGB")
    if size:
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im)


def run_import(source: Path, out_dir: Path, shared: Path, log=print, int8: bool = False) -> dict:
    """The whole of `agpis weights import`: convert, export (float32; int8: quantised), check, write
    the card."""
    from safetensors.torch import save_file

    from stage1.backbone import INT8_FILE, ONNX_FILE, Backbone, BackboneInfo, Preprocessing, remove_other_trunks
    from stage1.paths import TFLITE_DIR

    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"importing {source}")
    model, (in_scale, in_zp) = import_mobilenet_v2(source)
    pp = Preprocessing(size=model.config.image_size, zero_point=float(in_zp), scale=in_scale)
    st_path = out_dir / "mobilenet_v2.fp16.safetensors"
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(st_path),
              metadata={"config": json.dumps(asdict(model.config)), "source_sha256": sha256_file(source)})

    from stage1.backbone import preprocess

    onnx_file = INT8_FILE if int8 else ONNX_FILE
    if int8:
        calib = preprocess([load_rgb(p) for p in calibration_photos(shared)], pp)
        log(f"exporting ONNX and quantising with {len(calib)} calibration photos")
        export_int8_onnx(model, out_dir / onnx_file, calib)
        quantisation = (f"onnxruntime static QDQ, MinMax over {len(calib)} real photos; static TF pads folded "
                        "into the convolutions; its maps differ between x86 CPUs with and without VNNI")
    else:
        log("exporting ONNX (float32)")
        export_f32_onnx(model, out_dir / onnx_file)
        quantisation = "none: float32, static TF pads folded into the convolutions"
    remove_other_trunks(out_dir, onnx_file)
    info = BackboneInfo(preprocessing=pp, source=source.name, source_sha256=sha256_file(source),
                        onnx_sha256=sha256_file(out_dir / onnx_file), quantisation=quantisation, onnx_file=onnx_file)
    info.write(out_dir / "backbone.json")

    # Checks: the float model agrees with TFLite; the ONNX trunk (float32 or int8) agrees with it.
    photos = [load_rgb(p, pp.size) for p in check_photos(shared)]
    x = torch.from_numpy(np.ascontiguousarray(preprocess(photos, pp)))
    with torch.no_grad():
        f = model.forward_features(x)
        top1 = model.forward_head(f["final"]).argmax(1).numpy()
    ref = tflite_predict(source, np.stack(photos)).argmax(1)
    q = Backbone(out_dir).features(photos)
    cos = _cosine(f["final"].mean((2, 3)).numpy(), q["final"].mean(1))
    cos_patch = _cosine(f["patch"].permute(0, 2, 3, 1).reshape(-1, f["patch"].shape[1]).numpy(),
                        q["patch"].reshape(-1, q["patch"].shape[-1]))
    report = {"n_check": len(photos), "top1_agree": int((top1 == ref).sum()),
              "cos_final": float(cos.mean()), "cos_final_min": float(cos.min()),
              "cos_patch": float(cos_patch.mean())}
    (out_dir / "MODEL_CARD.md").write_text(CARD.format(
        source=source.name, tflite_dir=TFLITE_DIR, source_sha256=info.source_sha256,
        st_sha256=sha256_file(st_path), onnx_file=onnx_file, onnx_sha256=info.onnx_sha256,
        quantisation=quantisation, **report))
    log(json.dumps(report))
    return report


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def load_float_model(directory: Path) -> MobileNetV2:
    """The float PyTorch MobileNetV2 written by the import (strict: every key and shape)."""
    from safetensors import safe_open

    path = directory / "mobilenet_v2.fp16.safetensors"
    with safe_open(str(path), "pt") as f:
        cfg = json.loads(f.metadata()["config"])
        cfg["stages"] = tuple(tuple(s) for s in cfg["stages"])
        model = MobileNetV2(MobileNetV2Config(**cfg))
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    model.load_state_dict(state, strict=True)
    return model.eval()
