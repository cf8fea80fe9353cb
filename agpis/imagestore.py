"""Content-addressed store for images that arrived as bytes, so a reviewer (and the export
for retraining) can see them later by URI: <root>/<sha256[:2]>/<sha256>.<ext>.

`queue.image_store` is a local directory by default, or any fsspec URL (s3://bucket/agpis,
gs://..., memory://...) in production; the same bytes always get the same URI.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import fsspec

EXTENSIONS = {b"\xff\xd8\xff": "jpg", b"\x89PNG": "png", b"GIF8": "gif", b"BM": "bmp", b"RIFF": "webp"}


def extension(data: bytes) -> str:
    for magic, ext in EXTENSIONS.items():
        if data.startswith(magic):
            return ext
    return "bin"


class ImageStore:
    def __init__(self, root: str):
        if "://" not in root:
            root = Path(root).resolve().as_uri()  # a plain directory
        self.root = root.rstrip("/")
        self.fs, self.path = fsspec.core.url_to_fs(self.root)

    def put(self, data: bytes) -> str:
        """Store (once) and return the image's URI."""
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{digest[:2]}/{digest}.{extension(data)}"
        path = f"{self.path}/{rel}"
        if not self.fs.exists(path):
            self.fs.makedirs(f"{self.path}/{digest[:2]}", exist_ok=True)
            tmp = f"{path}.tmp"
            with self.fs.open(tmp, "wb") as f:
                f.write(data)
            self.fs.mv(tmp, path)  # readers never see half a file
        return f"{self.root}/{rel}"

    def get(self, uri: str) -> bytes:
        with fsspec.open(uri, "rb") as f:
            return f.read()
