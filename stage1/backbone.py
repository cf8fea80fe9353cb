"""The one image network of a request: ONE forward pass per image, shared by everything.

Stage 1's primary and non-compliant heads, the duplicate detector's patch features and stage 2's
image tokens all read the maps returned by `Backbone.features()`.

Default backbone: Google's ImageNet MobileNetV2 1.0/224 imported from TFLite
(`agpis weights import`, see stage1/tflite_import.py), exported to ONNX in float32 and run by
ONNX Runtime. Why not the int8 trunk it used to be (`agpis weights import --int8`, ~2x faster):
ONNX Runtime's uint8 x int8 kernels add pairs of products in int16 on x86 CPUs without VNNI
(AVX2, AVX-512 before Cascade Lake) and saturate, while CPUs with VNNI add in int32. The same
int8 file gave different maps on the two kinds of CPU, and the models trained on one kind's
maps decided differently on the other: on 2026-12-07 the shipped default queued 3 of 11 clean
real val listings on an AMD EPYC with AVX512-VNNI against 10 of 11 on the machine it was trained
on, and its golden outputs failed (the cause, most likely; one kind of CPU was at hand:
docs/evaluation.md, "One trunk, two answers"). Float maps differ between CPUs only in rounding.
Measured on the project's 2-core machine, 7 images at 224, one thread, pads folded: float32
~56 ms, int8 ~24 ms (the backbone column of `agpis bench stage1`).

CONTRACT with stage 2 (stable; changes are announced in the commit message):
`Stage1Result.features[candidate_id]` is a `numpy.ndarray`, dtype float32, shape (49, 1280):
the final 1x1 conv map (after ReLU6, values in [0, 6]) of the FROZEN ImageNet MobileNetV2 for
the image resized (squashed, whole image) to 224x224, as 7x7 tokens in row-major (y, x) order.
It never depends on stage 1's trained heads. Compute the same thing for training data with
`Backbone.features(list_of_rgb_uint8)["final"]` (shape (B, 49, 1280)) or `image_tokens()`.

Other backbones (ResNet, ViT, ... through transformers, from a local directory or a hub id) give
the same dict through `HFBackbone`; they are for users who have those weights.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

BACKBONE_JSON = "backbone.json"
ONNX_FILE = "backbone.f32.onnx"  # the default import's trunk; backbone.json names the one in use
INT8_FILE = "backbone.int8.onnx"  # `agpis weights import --int8`: see the module docstring
from stage1.paths import BASE_DIR as DEFAULT_DIR


@dataclass
class Preprocessing:
    """How an RGB uint8 image becomes the network's input. Travels with the weights."""
    size: int = 224  # square input; the whole image is resized (squashed), never cropped
    # x = (pixel - zero_point) * scale: the TFLite file's own input quantisation.
    zero_point: float = 127.0
    scale: float = 0.0078431373
    interpolation: str = "area"  # cv2.INTER_AREA when shrinking, bilinear when enlarging


def remove_other_trunks(directory: Path, keep: str) -> None:
    """One trunk per directory: a float32 import or training run leaves no int8 file behind, nor
    the reverse (backbone.json names the one in use)."""
    for name in {ONNX_FILE, INT8_FILE} - {keep}:
        (directory / name).unlink(missing_ok=True)


@dataclass
class BackboneInfo:
    name: str = "mobilenet_v2_1.0_224"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    patch_channels: int = 576  # "patch" map: block 13 expansion, stride 16 (14x14 at 224)
    final_channels: int = 1280  # "final" map: last 1x1 conv, stride 32 (7x7 at 224)
    patch_stride: int = 16
    source: str = ""  # file the weights came from
    source_sha256: str = ""
    onnx_sha256: str = ""
    quantisation: str = ""
    # The trunk's file in the same directory. Directories written before float32 became the
    # default hold the int8 one and no such key.
    onnx_file: str = INT8_FILE

    @classmethod
    def read(cls, path: Path) -> "BackboneInfo":
        d = json.loads(path.read_text())
        d["preprocessing"] = Preprocessing(**d.get("preprocessing", {}))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        return cls(**d)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @property
    def identity(self) -> str:
        """Name + weights hash: what stage 2 records as the backbone its image tokens came from."""
        return f"{self.name}:{self.onnx_sha256[:16]}"


def preprocess(images: list[np.ndarray], p: Preprocessing) -> np.ndarray:
    """RGB uint8 images of any sizes -> (B, 3, size, size) float32 network input."""
    import cv2

    out = np.empty((len(images), p.size, p.size, 3), np.float32)
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {im.shape} {im.dtype}")
        shrink = im.shape[0] >= p.size and im.shape[1] >= p.size
        interp = cv2.INTER_AREA if shrink and p.interpolation == "area" else cv2.INTER_LINEAR
        out[i] = cv2.resize(im, (p.size, p.size), interpolation=interp)
    out -= p.zero_point
    out *= p.scale
    return out.transpose(0, 3, 1, 2)  # (B, 3, S, S): a view; ORT copies what it needs


class Backbone:
    """ONNX Runtime session of the MobileNetV2 trunk (float32, or int8 in older directories); see the
    module docstring."""

    def __init__(self, directory: str | Path = DEFAULT_DIR, threads: int = 1, max_batch: int = 0):
        """`max_batch`: images per ONNX call at most (0: all given at once); see
        Stage1Config.backbone_batch."""
        import onnxruntime as ort

        if max_batch < 0:
            raise ValueError(f"stage1.backbone_batch is {max_batch}; expected images per call >= 1, or 0 for all at once")

        directory = Path(directory)
        info_path = directory / BACKBONE_JSON
        if not info_path.is_file():
            raise FileNotFoundError(f"{info_path} is missing; run `agpis weights import` (needs ../shared)")
        self.info = BackboneInfo.read(info_path)
        onnx_path = directory / self.info.onnx_file
        if not onnx_path.is_file():
            raise FileNotFoundError(f"{onnx_path} is missing; run `agpis weights import` (needs ../shared)")
        if self.info.onnx_sha256:
            from stage1.tflite_import import sha256_file

            got = sha256_file(onnx_path)
            if got != self.info.onnx_sha256:
                raise ValueError(f"{onnx_path}: sha256 {got} != {self.info.onnx_sha256} in {info_path}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        # Spinning threads steal the shared cores from concurrent requests (FACTS.md).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        self.directory = directory
        self.max_batch = max_batch

    @property
    def preprocessing(self) -> Preprocessing:
        return self.info.preprocessing

    def features(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """RGB uint8 images -> {"patch": (B, 14, 14, 576), "final": (B, 49, 1280)} float32.

        Batched forward passes of at most `max_batch` images. "patch" is channels-last for region
        pooling; "final" is already the stage 2 token layout (row-major 7x7)."""
        if not images:
            return {"patch": np.zeros((0, 14, 14, self.info.patch_channels), np.float32),
                    "final": np.zeros((0, 49, self.info.final_channels), np.float32)}
        x = np.ascontiguousarray(preprocess(images, self.preprocessing))
        step = self.max_batch or len(x)
        outs = [self.session.run(["patch", "final"], {"x": x[i:i + step]}) for i in range(0, len(x), step)]
        patch, final = (outs[0][k] if len(outs) == 1 else np.concatenate([o[k] for o in outs]) for k in (0, 1))
        b, c = final.shape[:2]
        return {"patch": patch.transpose(0, 2, 3, 1), "final": final.reshape(b, c, -1).transpose(0, 2, 1)}

    def image_tokens(self, images: list[np.ndarray]) -> np.ndarray:
        """(B, 49, 1280) float32: exactly what `Stage1Result.features[id]` holds, batched."""
        return np.ascontiguousarray(self.features(images)["final"])


class HFBackbone:
    """A transformers vision model (ResNet, ViT, MobileNetV2, ...) from a local directory or a
    hub id, giving the same {"patch", "final"} dict as `Backbone` (channels-last maps).

    CNNs: "final" is the last feature map, "patch" the last stride-16 hidden state. ViT-like
    models: the patch tokens (without CLS) serve as both. Preprocessing uses the model's own
    image processor settings when present (mean/std, size), else ImageNet's.
    """

    def __init__(self, name_or_path: str, threads: int = 1, local_files_only: bool = True):
        import torch
        from transformers import AutoConfig, AutoModel

        torch.set_num_threads(threads)
        self.config = AutoConfig.from_pretrained(name_or_path, local_files_only=local_files_only)
        self.model = AutoModel.from_pretrained(name_or_path, local_files_only=local_files_only).eval()
        size = getattr(self.config, "image_size", 224)
        size = size if isinstance(size, int) else size[0]
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        pp = Path(name_or_path) / "preprocessor_config.json"
        if pp.is_file():
            d = json.loads(pp.read_text())
            mean, std = np.array(d.get("image_mean", mean)), np.array(d.get("image_std", std))
        self.size, self.mean, self.std = size, mean.astype(np.float32), std.astype(np.float32)
        self.is_vit = hasattr(self.config, "patch_size") and not hasattr(self.config, "hidden_sizes")

    def features(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        p = Preprocessing(size=self.size, zero_point=0.0, scale=1 / 255)
        x = (preprocess(images, p).transpose(0, 2, 3, 1) - self.mean) / self.std  # (B, S, S, 3)
        with torch.inference_mode():
            out = self.model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32)),
                             output_hidden_states=True)
        if self.is_vit:
            tokens = out.last_hidden_state[:, 1:]  # (B, N, C) without CLS
            n = int(round(tokens.shape[1] ** 0.5))
            assert n * n == tokens.shape[1], f"non-square token grid {tokens.shape}"
            grid = tokens.reshape(tokens.shape[0], n, n, -1).numpy()
            return {"patch": grid, "final": tokens.numpy()}
        final = out.last_hidden_state  # (B, C, h, w)
        target = final.shape[-1] * 2  # stride 16 = twice the final map's width
        patch = next((h for h in reversed(out.hidden_states) if h.ndim == 4 and h.shape[-1] == target), final)
        return {"patch": patch.permute(0, 2, 3, 1).numpy(),
                "final": final.flatten(2).transpose(1, 2).numpy()}


def load_backbone(spec: str | Path | None = None, threads: int = 1):
    """`None` or a directory with backbone.json -> the ONNX MobileNetV2; "hf:<dir or hub id>"
    -> a transformers model (hub ids need network access; here only local directories work)."""
    if spec is None:
        return Backbone(DEFAULT_DIR, threads)
    spec = str(spec)
    if spec.startswith("hf:"):
        # A hub id needs the hub (or its cache); a directory never touches the network.
        return HFBackbone(spec[3:], threads, local_files_only=Path(spec[3:]).exists())
    if (Path(spec) / BACKBONE_JSON).is_file():
        return Backbone(spec, threads)
    raise ValueError(f"unknown backbone {spec!r}: expected a directory with {BACKBONE_JSON} or 'hf:<dir or hub id>'")
