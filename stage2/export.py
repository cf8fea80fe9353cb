"""ONNX export of the default MUIsC's scoring path (images + `title [SEP]` -> class logits), for
serving with ONNX Runtime when that is faster than eager PyTorch (`agpis bench stage2` measures
both). Feedback generation stays in PyTorch: it is a loop with a growing cache."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch


ONNX_FILE = "muisc.onnx"


class _Scoring(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images, idx, sep_pos):
        return self.model(images, idx, sep_pos).class_logits


def export_scoring(model, path: str | Path, n_images: int = 3, tokens: int = 49, channels: int = 1280) -> Path:
    """Write `path` (ONNX, opset 17) with dynamic batch and text length."""
    path = Path(path)
    model = model.eval()
    images = torch.rand(2, n_images, tokens, channels)
    idx = torch.randint(4, model.config.vocab_size, (2, 12))
    sep = torch.full((2,), 11)
    # the wrapper must be in eval mode too: export restores its mode onto the model afterwards
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the shape asserts: shapes are dynamic axes
        torch.onnx.export(_Scoring(model).eval(), (images, idx, sep), str(path),
                          input_names=["images", "idx", "sep_pos"],
                          output_names=["class_logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"images": {0: "batch"}, "idx": {0: "batch", 1: "length"},
                                        "sep_pos": {0: "batch"}, "class_logits": {0: "batch"}})
    return path


class OnnxScorer:
    """ONNX Runtime session of the exported scoring path."""

    def __init__(self, path: str | Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared cores (FACTS.md)
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, images: np.ndarray, idx: np.ndarray, sep_pos: np.ndarray) -> np.ndarray:
        return self.session.run(["class_logits"], {"images": images.astype(np.float32, copy=False),
                                                   "idx": idx.astype(np.int64, copy=False),
                                                   "sep_pos": sep_pos.astype(np.int64, copy=False)})[0]
