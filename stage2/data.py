"""MUIsC's training data: AGPIS-data records -> (images or cached backbone tokens, text, label).

The default MUIsC reads the frozen shared backbone's tokens (stage1.backbone, the same
(49, 1280) arrays that `Stage1Result.features[id]` holds at serving time). They are computed
ONCE per dataset image and kept in a float16 cache under var/ (`FeatureCache`), so a training
epoch costs only MUIsC's own layers. Images are decoded by the service's own decoder
(agpis.images.decode) so training sees exactly the pixels serving sees.
"""
from __future__ import annotations

import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from agpis import rules

CACHE_VERSION = 1


@dataclass
class Example:
    title: str
    images: list[str]  # image keys (resolved paths/URIs), primary first
    label: str  # "qualified" or a rule id
    feedback: str
    product_id: str = ""
    style_split: str = ""
    record_index: int = -1  # position in the record list it came from
    category: str = ""


def image_key(record, i: int) -> str:
    return str(record.path(i))


def examples_from_records(records) -> list[Example]:
    out = []
    for n, r in enumerate(records):
        if not rules.is_known(r.label):
            raise ValueError(f"record {n} ({r.product_id}): unknown label {r.label!r}")
        out.append(Example(r.title, [image_key(r, i) for i in r.sequence], r.label, r.feedback,
                           r.product_id, r.style_split or "", n, r.category))
    return out


def load_examples(data_dir: str | Path, split: str) -> tuple[list, list[Example]]:
    from agpis.data.format import load_dataset

    records = load_dataset(data_dir, split)
    return records, examples_from_records(records)


def _colour_words_in(title: str, category: str) -> list:
    """Matches of the catalogue's colour words in the title proper (not a description after a
    colon), leaving out words of the category ("Orange" names the fruit)."""
    import re

    words = "|".join(c for c in rules.COLOUR_WORDS if c not in category.lower().split())
    return list(re.finditer(rf"\b({words})\b", title.split(":")[0], flags=re.IGNORECASE)) if words else []


def _swap_colour(title: str, match, rng) -> tuple[str, str]:
    """`title` with the colour word at `match` replaced by another -> (title, new colour)."""
    old = match.group(0).lower()
    new = rng.choice([c for c in rules.COLOUR_WORDS if c != old])
    new_cased = new.title() if match.group(0)[0].isupper() else new
    return title[:match.start()] + new_cased + title[match.end():], new


def with_title_negatives(examples: list[Example], share: float, seed: int) -> list[Example]:
    """A copy of `examples` in which `share` of them, drawn among the qualified ones whose title
    names a colour, carry that title with the colour word swapped for another: labelled
    title_mismatch, with a reviewer's sentence.

    Why: the dataset has few title_mismatch sequences (about 3%) and a title-image mismatch is
    learnt only from negatives (a qualified sequence's title agrees with its images by
    definition), so MUIsC hardly learnt the rule. Image-text matching negatives, as in
    vision-language pre-training, but only colour swaps: with the title of a product of another
    category as the negative (tried first), the model learnt which title goes with which training
    product and then rejected nearly every product it had not seen (validation AUC 0.72 against
    0.83 at the same epoch; median p_qualified of qualified validation sequences 0.04). A swapped
    colour word keeps the product words right, so only the colour can tell. Resampled per epoch
    (`seed`); only for models that read the title."""
    import random

    if share <= 0:
        return examples
    rng = random.Random(seed)
    out = list(examples)
    found = {i: _colour_words_in(e.title, e.category) for i, e in enumerate(examples) if e.label == rules.QUALIFIED}
    coloured = [i for i, matches in found.items() if matches]
    for i in rng.sample(coloured, min(len(coloured), round(share * len(examples)))):
        e = examples[i]
        title, colour = _swap_colour(e.title, rng.choice(found[i]), rng)
        fb = rules.feedback("title_mismatch", detail=f"{colour} {e.category}".strip(), rng=rng)
        out[i] = replace(e, title=title, label="title_mismatch", feedback=fb)
    return out


def has_split(data_dir: str | Path, split: str) -> bool:
    return (Path(data_dir) / f"{split}.jsonl").is_file()


def read_rgb(key: str) -> np.ndarray:
    """Decode one dataset image exactly as the service decodes a request's image."""
    from agpis.config import ImagesConfig
    from agpis.images import decode

    return decode(key, Path(key).read_bytes(), ImagesConfig()).pixels


class FeatureCache:
    """(N, 49, 1280) float16 backbone tokens, one row per distinct image, memory-mapped.

    directory/tokens.npy + index.json ({key: row}) + meta.json (backbone identity and shape).
    A cache built by another backbone is refused (its tokens would mean something else)."""

    def __init__(self, directory: str | Path, backbone_id: str | None = None):
        self.directory = Path(directory)
        meta_path = self.directory / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory}: no feature cache; `agpis train muisc` builds it")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("complete") is not True:
            raise RuntimeError(f"{self.directory}: feature cache is incomplete; rebuild it (resumes)")
        if backbone_id is not None and self.meta["backbone"] != backbone_id:
            raise ValueError(f"{self.directory}: cache made by backbone {self.meta['backbone']}, "
                             f"not {backbone_id}")
        self.index: dict[str, int] = json.loads((self.directory / "index.json").read_text())
        self.tokens = np.load(self.directory / "tokens.npy", mmap_mode="r")  # (N, T, C) float16

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def get(self, keys: list[str]) -> np.ndarray:
        return np.stack([self.tokens[self.index[k]] for k in keys])  # (K, T, C)

    @staticmethod
    def build(directory: str | Path, keys: list[str], backbone, backbone_id: str, batch: int = 32,
              progress: bool = True, reader=read_rgb) -> "FeatureCache":
        """Compute tokens for `keys` (deduplicated, sorted); `reader(key)` gives the RGB image
        (the early-fusion cache reads mosaics). Resumes an interrupted build: rows are written
        in key order and meta.json records how many are done."""
        from tqdm import tqdm

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        keys = sorted(set(keys))
        meta_path = directory / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        same = meta.get("backbone") == backbone_id and meta.get("n") == len(keys) \
            and meta.get("version") == CACHE_VERSION and (directory / "index.json").is_file() \
            and json.loads((directory / "index.json").read_text()) == {k: i for i, k in enumerate(keys)}
        if same and meta.get("complete"):
            return FeatureCache(directory, backbone_id)
        run = backbone.image_tokens
        first = np.asarray(run([reader(keys[0])]))
        shape = (len(keys), *first.shape[1:])
        done = meta.get("done", 0) if same else 0
        if not same:
            (directory / "index.json").write_text(json.dumps({k: i for i, k in enumerate(keys)}))
            arr = np.lib.format.open_memmap(directory / "tokens.npy", mode="w+", dtype=np.float16, shape=shape)
        else:
            arr = np.load(directory / "tokens.npy", mmap_mode="r+")
        meta = {"version": CACHE_VERSION, "backbone": backbone_id, "n": len(keys), "shape": list(shape),
                "done": done, "complete": False}
        meta_path.write_text(json.dumps(meta))
        batches = [keys[i:i + batch] for i in range(done, len(keys), batch)]
        with ThreadPoolExecutor(3) as pool, tqdm(total=len(keys), initial=done, desc="feature cache",
                                                 disable=not progress, unit="img") as bar:
            # Decoding (PIL releases the GIL) overlaps the network's forward pass; only a few
            # batches are decoded ahead, so memory stays bounded whatever the dataset size.
            ahead = deque(pool.submit(lambda ks: [reader(k) for k in ks], ks) for ks in batches[:3])
            start = done
            for n, ks in enumerate(batches):
                imgs = ahead.popleft().result()
                if n + 3 < len(batches):
                    ahead.append(pool.submit(lambda ks: [reader(k) for k in ks], batches[n + 3]))
                arr[start:start + len(ks)] = np.asarray(run(imgs), dtype=np.float16)
                start += len(ks)
                bar.update(len(ks))
                if start // batch % 20 == 0 or start == len(keys):
                    arr.flush()
                    meta["done"] = start
                    meta_path.write_text(json.dumps(meta))
        arr.flush()
        meta.update(done=len(keys), complete=True)
        meta_path.write_text(json.dumps(meta))
        return FeatureCache(directory, backbone_id)


def mosaic(images: list[np.ndarray], size: int = 224) -> np.ndarray:
    """Early fusion's single image: the sequence's images in a 2x2 grid (reading order, the
    fourth cell white), `size` px square, the input size of the fixed-size backbone."""
    import cv2

    half = size // 2
    out = np.full((size, size, 3), 255, np.uint8)
    for i, im in enumerate(images[:4]):
        y, x = divmod(i, 2)
        out[y * half:(y + 1) * half, x * half:(x + 1) * half] = cv2.resize(im, (half, half),
                                                                         interpolation=cv2.INTER_AREA)
    return out


def mosaic_key(image_keys: list[str]) -> str:
    return "\x1f".join(image_keys)


def read_mosaic(key: str) -> np.ndarray:
    return mosaic([read_rgb(k) for k in key.split("\x1f")])


def backbone_identity(backbone) -> str:
    info = getattr(backbone, "info", None)
    if info is not None:  # the shipped ONNX MobileNetV2: name + weights hash
        return info.identity
    return f"{type(backbone).__name__}:{getattr(backbone, 'config', object()).__class__.__name__}"


_BACKBONES: dict[str, object] = {}


def load_backbone(spec: str = ""):
    """The shared stage 1 backbone (default: the shipped float32 MobileNetV2), loaded once."""
    if spec not in _BACKBONES:
        from stage1.backbone import load_backbone as load

        _BACKBONES[spec] = load(spec or None, threads=max(1, torch.get_num_threads()))
    return _BACKBONES[spec]


def cached_source(kind: str, examples: list[Example], cache_dir: str | Path, backbone: str = "",
                  progress: bool = True):
    """(source(image keys) -> (K, 49, C) float16 array, preprocessing dict) over a cache of every
    image (kind "tokens") or every sequence's mosaic (kind "mosaic", early fusion) of `examples`.
    The cache directory is named by the hash of its key list, so datasets never clobber each
    other; an existing complete cache is reused without loading the backbone."""
    import hashlib

    if kind not in ("tokens", "mosaic"):
        raise ValueError(f"kind must be 'tokens' or 'mosaic', got {kind!r}")
    keys = sorted({mosaic_key(e.images) for e in examples} if kind == "mosaic"
                  else {k for e in examples for k in e.images})
    h = hashlib.sha1()
    for k in sorted({k for e in examples for k in e.images}):  # a rebuilt dataset is a new cache
        st = Path(k).stat()
        h.update(f"{k}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
    h.update(kind.encode())
    digest = h.hexdigest()[:12]
    directory = Path(cache_dir) / f"{kind}-{digest}"
    meta = directory / "meta.json"
    ready = meta.is_file() and json.loads(meta.read_text()).get("complete") is True
    bb = None if ready else load_backbone(backbone)
    bid = json.loads(meta.read_text())["backbone"] if ready else backbone_identity(bb)
    if not ready:
        FeatureCache.build(directory, keys, bb, bid, progress=progress,
                           reader=read_mosaic if kind == "mosaic" else read_rgb)
    cache = FeatureCache(directory, bid)
    pre = {"kind": "backbone_tokens", "backbone": bid, "backbone_spec": backbone,
           "tokens": "stage1.backbone image_tokens: (49, 1280) float32 per image",
           "early_fusion": kind == "mosaic"}
    if kind == "mosaic":
        pre["mosaic"] = "stage2.data.mosaic: the images in a 2x2 grid at 224 px, 4th cell white"
        return (lambda ks: cache.get([mosaic_key(ks)])), pre
    return cache.get, pre


class SequenceDataset(torch.utils.data.Dataset):
    """Examples -> tensors. `source(keys) -> (K, ...) array` gives the images of one sequence:
    cached tokens (features models), a mosaic's tokens (early fusion) or pixels (ViT)."""

    def __init__(self, examples: list[Example], source, tokenizer, classes: tuple[str, ...],
                 max_title: int, max_feedback: int, use_title: bool = True, with_feedback: bool = True):
        self.examples, self.source, self.tok = examples, source, tokenizer
        self.class_index = {c: i for i, c in enumerate(classes)}
        missing = sorted({e.label for e in examples} - set(self.class_index))
        if missing:
            raise ValueError(f"labels {missing} are not among the model's classes")
        self.max_title, self.max_feedback, self.use_title = max_title, max_feedback, use_title
        self.with_feedback = with_feedback  # False: the inference prompt `title [SEP]` only

    def __len__(self):
        return len(self.examples)

    def __getitem__(self, i):
        e = self.examples[i]
        images = torch.from_numpy(np.asarray(self.source(e.images)))
        if self.tok is None:  # image-only models (single tower, no decoder): no text at all
            return images, torch.tensor([0]), 0, torch.tensor([-100]), self.class_index[e.label], i
        enc = self.tok.encode(e.title, e.feedback if self.with_feedback else None, self.max_title,
                              self.max_feedback, self.use_title)
        return images, torch.tensor(enc.ids), enc.sep_pos, torch.tensor(enc.lm_targets), self.class_index[e.label], i


def collate(batch, pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded text (causal attention needs no mask for right padding)."""
    images, ids, sep, targets, labels, index = zip(*batch)
    L = max(len(x) for x in ids)
    idx = torch.full((len(batch), L), pad_id, dtype=torch.long)
    tgt = torch.full((len(batch), L), -100, dtype=torch.long)
    for j, (a, t) in enumerate(zip(ids, targets)):
        idx[j, :len(a)], tgt[j, :len(t)] = a, t
    return {"images": torch.stack(images), "idx": idx, "sep_pos": torch.tensor(sep),
            "lm_targets": tgt, "labels": torch.tensor(labels), "index": torch.tensor(index)}


def pixel_source(size: int, mean, std):
    """Pixels for the paper configuration's ViT: squashed to size x size, normalised."""
    import cv2

    m = np.asarray(mean, np.float32)[:, None, None]
    s = np.asarray(std, np.float32)[:, None, None]

    def source(keys: list[str]) -> np.ndarray:
        out = [cv2.resize(read_rgb(k), (size, size), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
               for k in keys]
        return ((np.stack(out).astype(np.float32) / 255.0) - m) / s  # (K, 3, S, S)

    return source
