"""Text regions: the PP-OCRv4 text detector (DB, a segmentation net) shipped inside the
`rapidocr-onnxruntime` wheel, run with onnxruntime and a small DB post-processing of our own.

rapidocr's own classes are not imported: its package imports opencv-python, which would
replace opencv-contrib's cv2 (and cv2.ximgproc, which EdgeBoxes needs); only its ONNX file is
used. It is the costliest check (~13 ms per image at 256 px on one core, ~100 ms for seven), so
stage 1 runs it only on the images whose learned text-like scores make it worth it
(Stage1Config.text_check_*), at reduced resolution.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

MODEL_NAME = "ch_PP-OCRv4_det_infer.onnx"


def model_path() -> Path:
    """The detector inside the installed rapidocr-onnxruntime wheel (located without importing it)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("rapidocr-onnxruntime is not installed (pip install --no-deps rapidocr-onnxruntime==1.4.4)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the rapidocr-onnxruntime wheel")
    return path


@dataclass
class TextDetConfig:
    side: int = 320  # longest side the detector sees (multiple of 32 after rounding)
    thresh: float = 0.3  # DB: probability above which a pixel is text
    box_thresh: float = 0.5  # mean probability inside a region for it to count
    unclip_ratio: float = 1.6  # DB shrinks text regions when training; grow them back by this
    min_side: int = 3  # regions thinner than this (in detector pixels) are noise


class TextDetector:
    def __init__(self, cfg: TextDetConfig | None = None, threads: int = 1):
        import onnxruntime as ort

        self.cfg = cfg or TextDetConfig()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path()), so, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def detect(self, pixels: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """RGB uint8 (H, W, 3) -> [(box x0, y0, x1, y1 in `pixels` coordinates, score)]."""
        return self._detect(pixels, self.cfg.side)

    def _detect(self, pixels: np.ndarray, side: int) -> list[tuple[tuple[int, int, int, int], float]]:
        h, w = pixels.shape[:2]
        s = side / max(h, w)
        nh, nw = max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)
        img = cv2.resize(pixels, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        # PaddleOCR's detector was trained on BGR images normalised to [-1, 1].
        x = (img[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5
        prob = self.session.run(None, {self.input_name: x.transpose(2, 0, 1)[None]})[0][0, 0]  # (nh, nw)
        return [((int(x0 * w / nw), int(y0 * h / nh), int(np.ceil(x1 * w / nw)), int(np.ceil(y1 * h / nh))), sc)
                for (x0, y0, x1, y1), sc in db_boxes(prob, self.cfg)]


    def detect_in(self, pixels: np.ndarray, region: tuple[float, float, float, float], min_side: int = 128
                  ) -> list[tuple[tuple[int, int, int, int], float]]:
        """Text in one region (normalised x0, y0, x1, y1) of the image, looked at closely: the crop
        is enlarged to at least `min_side` px; boxes come back in `pixels` coordinates."""
        h, w = pixels.shape[:2]
        x0, y0 = int(region[0] * w), int(region[1] * h)
        x1, y1 = max(x0 + 1, int(np.ceil(region[2] * w))), max(y0 + 1, int(np.ceil(region[3] * h)))
        crop = pixels[y0:y1, x0:x1]
        side = max(min_side, max(crop.shape[:2]))
        found = self._detect(crop, side)
        return [((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0), sc) for (bx0, by0, bx1, by1), sc in found]


def db_boxes(prob: np.ndarray, cfg: TextDetConfig) -> list[tuple[tuple[float, float, float, float], float]]:
    """DB post-processing with axis-aligned boxes: threshold, dilate, connected regions, keep those
    whose mean probability passes, grow each by area * unclip_ratio / perimeter on every side."""
    bitmap = (prob > cfg.thresh).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(bitmap, connectivity=4)
    out = []
    h, w = prob.shape
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if min(bw, bh) < cfg.min_side:
            continue
        score = float(prob[y:y + bh, x:x + bw][labels[y:y + bh, x:x + bw] == i].mean())
        if score < cfg.box_thresh:
            continue
        d = bw * bh * cfg.unclip_ratio / (2 * (bw + bh))
        out.append(((max(0.0, x - d), max(0.0, y - d), min(float(w), x + bw + d), min(float(h), y + bh + d)), score))
    return out
