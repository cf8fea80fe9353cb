"""Stage 2 at serving time: MUIsC scores every candidate sequence of a request in one batch.

- p_qualified = softmax(class logits at [SEP])[qualified] (the paper's p^t);
- `rule`: the most likely class other than qualified;
- `feedback` (explain=True): the NLG head's greedy sentence, the explanation the paper's
  deployment never used; by default only for the sequence with the highest p_qualified (the
  one the pipeline keeps), for all with `Stage2Config.explain_all`. A sequence with p_qualified < `Stage2Config.explain_below` may not
  answer "yes", and its sentence explains the rule the class head found most likely
  (stage2.explain): the NLG head picks the words, the image(s) and the region.

Image tokens are stage 1's per-image features (`Stage1Result.features[id]`, the shared
backbone's (49, 1280) map), so stage 2 runs no image network of its own; when they are absent
(tests, `agpis generate` paths without stage 1) the same backbone computes them here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from agpis import rules
from stage1.types import CandidateImage
from stage2 import calibrate
from stage2.config import Stage2Config
from stage2.types import SequenceScore


class MUIsCStage2:
    def __init__(self, directory: str | Path, config: Stage2Config | None = None):
        from stage2 import checkpoint

        self.config = config or Stage2Config()
        self.directory = Path(directory)
        self.model, self.tokenizer, self.meta = checkpoint.load(self.directory)
        if self.meta["arch"] != "muisc":
            raise ValueError(f"{directory}: a {self.meta['arch']} baseline cannot serve as stage 2")
        self.pre = self.meta["preprocessing"]
        if self.pre.get("kind") not in ("backbone_tokens", "pixels") or self.pre.get("early_fusion"):
            raise ValueError(f"{directory}: unsupported preprocessing {self.pre}")
        self.classes = tuple(self.meta["classes"])
        self.q = self.classes.index(rules.QUALIFIED)
        digest = self.meta["files"]["model.safetensors"][:12]
        self.version = f"{self.meta['version']} (sha256 {digest})"
        text = self.meta["text"]
        self.max_title = int(text["max_title"])
        self.calibration = self.meta.get("calibration")
        from stage2.novelty import NoveltyIndex

        self.novelty_index = NoveltyIndex.load(self.directory)  # None: no uncertain band
        self.explainer = None
        if self.model.config.use_decoder:
            from stage2.explain import Explainer

            self.explainer = Explainer(self.model, self.tokenizer, self.config.explain_below,
                                       self.config.max_feedback_tokens)
        self._backbone = None
        # the exported scoring path (stage2.export), when the installed weights carry it
        from stage2.export import ONNX_FILE, OnnxScorer

        self.onnx = OnnxScorer(self.directory / ONNX_FILE, threads=self.config.onnx_threads) if ONNX_FILE in self.meta["files"] else None

    @property
    def n_images(self) -> int:
        return self.model.config.n_images

    def _tokens(self, sequences: list[list[CandidateImage]], features: dict[str, Any] | None) -> torch.Tensor:
        """(S, K, 49, C) image tokens: stage 1's where given, else computed once per image."""
        features = dict(features or {})
        if self.pre["kind"] == "pixels":
            return self._pixels(sequences)
        missing = {im.id: im for seq in sequences for im in seq if im.id not in features}
        if missing:
            if self._backbone is None:
                from stage2.data import load_backbone

                self._backbone = load_backbone(self.pre.get("backbone_spec", ""))
            ims = list(missing.values())
            for im, tok in zip(ims, self._backbone.image_tokens([im.pixels for im in ims])):
                features[im.id] = tok
        rows = []
        for seq in sequences:
            maps = [np.asarray(features[im.id]) for im in seq]
            for im, m in zip(seq, maps):
                if m.ndim != 2 or m.shape[0] != self.model.config.feature_grid ** 2 or m.shape[1] != self.model.config.feature_dim:
                    raise ValueError(f"features[{im.id!r}] has shape {m.shape}; MUIsC expects "
                                     f"({self.model.config.feature_grid ** 2}, {self.model.config.feature_dim})")
            rows.append(np.stack(maps))
        return torch.from_numpy(np.stack(rows).astype(np.float32, copy=False))

    def novelty(self, sequence: list[CandidateImage], features: dict[str, Any] | None = None
                ) -> tuple[float, float] | None:
        """(novelty of the sequence's images, the threshold above which it is uncertain), or None
        when these weights carry no novelty index (stage2.novelty)."""
        if self.novelty_index is None or self.pre["kind"] == "pixels":
            return None
        from stage2.novelty import pooled

        tokens = self._tokens([sequence], features)[0].numpy()  # (K, 49, C)
        return self.novelty_index.sequence_novelty(pooled(tokens)), self.novelty_index.threshold

    def _pixels(self, sequences: list[list[CandidateImage]]) -> torch.Tensor:
        import cv2

        size = int(self.pre["image_size"])
        mean = np.asarray(self.pre["mean"], np.float32)
        std = np.asarray(self.pre["std"], np.float32)
        rows = [[(cv2.resize(im.pixels, (size, size), interpolation=cv2.INTER_AREA) / 255.0 - mean) / std
                 for im in seq] for seq in sequences]
        return torch.from_numpy(np.asarray(rows, np.float32).transpose(0, 1, 4, 2, 3).copy())  # (S, K, 3, H, W)

    def score(self, title: str, sequences: list[list[CandidateImage]],
              features: dict[str, Any] | None = None, explain: bool = True) -> list[SequenceScore]:
        if not isinstance(title, str) or not title.strip():
            raise ValueError("title is empty: MUIsC reads the title with the images")
        if not sequences:
            return []
        for seq in sequences:
            if len(seq) != self.n_images:
                raise ValueError(f"MUIsC scores sequences of {self.n_images} images (K^t of its training "
                                 f"data); got {len(seq)}")
        images = self._tokens(sequences, features)
        c = self.model.config
        sentences = None
        with torch.inference_mode():
            if c.use_decoder:
                enc = self.tokenizer.encode(title, None, self.max_title, 0, c.use_title)
                prompt = torch.tensor([enc.ids] * len(sequences))
                if explain and (self.config.explain_all or len(sequences) == 1):
                    logits, sentences = self.explainer.explain(images, prompt)
                elif self.onnx is not None and not explain:
                    logits = torch.from_numpy(self.onnx(images.numpy(), prompt.numpy(),
                                                        np.full((len(sequences),), enc.sep_pos)))
                else:
                    logits = self.model(images, prompt, torch.full((len(sequences),), enc.sep_pos)).class_logits
                    if explain:  # the sequence the pipeline keeps: highest p_qualified
                        best = int(torch.softmax(logits.float(), -1)[:, self.q].argmax())
                        _, one = self.explainer.explain(images[best:best + 1], prompt[:1])
                        sentences = [""] * len(sequences)
                        sentences[best] = one[0]
            else:
                logits = self.model(images).class_logits
        # Platt scaling fitted on real validation listings (stage2.calibrate), when the weights carry it.
        probs = calibrate.apply_to_probs(torch.softmax(logits.float(), -1).numpy(), self.q, self.calibration)
        out = []
        for i, seq in enumerate(sequences):
            named = self._by_catalogue(probs[i])
            rule = max((k for k in named if k != rules.QUALIFIED), key=named.get)
            feedback = ""
            if explain:
                feedback = sentences[i] if sentences is not None else rules.feedback(rule)  # no NLG head
            out.append(SequenceScore([im.id for im in seq], float(probs[i, self.q]), rule, named, feedback))
        return out

    def _by_catalogue(self, p: np.ndarray) -> dict[str, float]:
        """Probabilities by class name; classes the catalogue no longer has count as `other`."""
        named: dict[str, float] = {}
        for name, v in zip(self.classes, p.tolist()):
            key = name if rules.is_known(name) else rules.OTHER
            named[key] = named.get(key, 0.0) + v
        return named
