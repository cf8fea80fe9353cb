"""Getting candidate images safely: bytes, file:// and http(s):// URIs, with size caps,
timeouts, decompression-bomb limits and an allow-list of remote hosts.

Every failure is an ImageError naming the candidate, so the service can answer
INVALID_ARGUMENT with a message the caller can act on, and keep serving.
"""
from __future__ import annotations

import fnmatch
import io
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from agpis.config import ImagesConfig
from stage1.types import CandidateImage

# We enforce our own pixel limit before decoding (ImagesConfig.max_pixels); PIL's global one
# would raise a different error type at a different threshold.
Image.MAX_IMAGE_PIXELS = None
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO")


class ImageError(ValueError):
    """A candidate image that cannot be used; the message names the candidate."""

    def __init__(self, candidate_id: str, message: str):
        super().__init__(f"candidate {candidate_id!r}: {message}")
        self.candidate_id = candidate_id


def fetch(candidate_id: str, uri: str, cfg: ImagesConfig) -> bytes:
    """The encoded bytes behind a file:// or http(s):// URI, within the configured limits."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "file":
        return _read_file(candidate_id, Path(urllib.parse.unquote(parsed.path)), cfg)
    if parsed.scheme in ("http", "https"):
        return _fetch_http(candidate_id, uri, cfg)
    raise ImageError(candidate_id, f"unsupported URI scheme {parsed.scheme!r} (use file://, http:// or https://)")


def _read_file(candidate_id: str, path: Path, cfg: ImagesConfig) -> bytes:
    roots = [Path(r).resolve() for r in cfg.file_roots]
    real = path.resolve()  # follows symlinks, so a link cannot lead outside the roots
    if not any(real == root or root in real.parents for root in roots):
        raise ImageError(candidate_id, f"file:// URIs are allowed only under images.file_roots "
                                       f"({', '.join(map(str, roots)) or 'none configured'}); got {path}")
    try:
        size = real.stat().st_size
        if size > cfg.max_bytes:
            raise ImageError(candidate_id, f"file is {size} bytes; the limit is {cfg.max_bytes}")
        return real.read_bytes()
    except OSError as e:
        raise ImageError(candidate_id, f"cannot read {path}: {e.strerror or e}") from None


def host_allowed(host: str, allowed: list[str]) -> bool:
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in allowed)


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another allowed host (an allowed host must not be able to
    bounce us to an internal address)."""

    def __init__(self, allowed: list[str]):
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        host = urllib.parse.urlsplit(newurl).hostname or ""
        if not host_allowed(host, self.allowed):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a host not in images.allowed_hosts: {host}",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch_http(candidate_id: str, uri: str, cfg: ImagesConfig) -> bytes:
    host = urllib.parse.urlsplit(uri).hostname or ""
    if not host_allowed(host, cfg.allowed_hosts):
        raise ImageError(candidate_id, f"host {host!r} is not in images.allowed_hosts")
    opener = urllib.request.build_opener(_CheckedRedirects(cfg.allowed_hosts))
    try:
        with opener.open(urllib.request.Request(uri, headers={"User-Agent": "agpis"}),
                         timeout=cfg.fetch_timeout_s) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                raise ImageError(candidate_id, f"{uri} is {declared} bytes; the limit is {cfg.max_bytes}")
            data = resp.read(cfg.max_bytes + 1)  # never trust Content-Length alone
    except ImageError:
        raise
    except urllib.error.HTTPError as e:
        raise ImageError(candidate_id, f"fetching {uri} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ImageError(candidate_id, f"fetching {uri} failed: {reason}") from None
    if len(data) > cfg.max_bytes:
        raise ImageError(candidate_id, f"{uri} is larger than the limit of {cfg.max_bytes} bytes")
    return data


def decode(candidate_id: str, data: bytes, cfg: ImagesConfig, uri: str | None = None) -> CandidateImage:
    """Decode to RGB at reduced size (JPEG DCT scaling), after checking size and pixel count.

    The pixel count is read from the header before any pixel is decoded, so a decompression
    bomb (a small file claiming a huge image) is refused without allocating it.
    """
    if not data:
        raise ImageError(candidate_id, "image is empty")
    if len(data) > cfg.max_bytes:
        raise ImageError(candidate_id, f"image is {len(data)} bytes; the limit is {cfg.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncated-file and palette warnings become errors below
            img = Image.open(io.BytesIO(data))
            if img.format not in FORMATS:
                raise ImageError(candidate_id, f"unsupported image format {img.format}")
            width, height = img.size
            if width < 1 or height < 1:
                raise ImageError(candidate_id, f"image has no pixels ({width}x{height})")
            if width * height > cfg.max_pixels:
                raise ImageError(candidate_id, f"image is {width}x{height} = {width * height} pixels; "
                                               f"the limit is {cfg.max_pixels}")
            if img.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale, never below the target size: ~4x faster.
                img.draft("RGB", (cfg.decode_max_side, cfg.decode_max_side))
            img = ImageOps.exif_transpose(img)  # phone photos: honour the orientation tag
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                img = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent = shown on white
                img.paste(rgba, mask=rgba.getchannel("A"))
            else:
                img = img.convert("RGB")
            pixels = np.asarray(img)
            if max(pixels.shape[:2]) > 1.5 * cfg.decode_max_side:  # draft could not reduce enough
                f = cfg.decode_max_side / max(pixels.shape[:2])
                size = (max(1, round(pixels.shape[1] * f)), max(1, round(pixels.shape[0] * f)))
                pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(candidate_id, "not a readable image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(candidate_id, f"not a readable image ({e})") from None
    if exif_swaps(width, height, pixels):
        width, height = height, width
    return CandidateImage(candidate_id, np.ascontiguousarray(pixels), (width, height), uri)


def exif_swaps(width: int, height: int, pixels: np.ndarray) -> bool:
    """True when the EXIF rotation turned a landscape header into a portrait image (or back)."""
    h, w = pixels.shape[:2]
    return (width > height) != (w > h) and width != height and w != h


def load_candidate(candidate_id: str, cfg: ImagesConfig, data: bytes | None = None,
                   uri: str | None = None) -> tuple[CandidateImage, bytes]:
    """Bytes or a URI -> (decoded image, encoded bytes). Exactly one source must be given."""
    if (data is None) == (uri is None) or (uri is not None and not uri):
        raise ImageError(candidate_id, "give either the image bytes or a URI")
    if data is None:
        data = fetch(candidate_id, uri, cfg)
    return decode(candidate_id, data, cfg, uri), data
