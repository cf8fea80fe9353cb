"""Getting candidate images safely: bytes, file:// and http(s):// URIs, with size caps,
time limits, decompression-bomb limits, a bound on the memory that decoding takes, and an
allow-list of remote hosts.

Every failure is an ImageError naming the candidate, so the service can answer
INVALID_ARGUMENT with a message the caller can act on, and keep serving.
"""
from __future__ import annotations

import fnmatch
import http.client
import io
import math
import socket
import ssl
import threading
import time
import urllib.parse
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from agpis.config import ImagesConfig
from stage1.types import MIN_SIDE, CandidateImage

# We enforce our own pixel limit before decoding (ImagesConfig.max_pixels); PIL's global one
# would raise a different error type at a different threshold.
Image.MAX_IMAGE_PIXELS = None
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "MPO")
MAX_REDIRECTS = 3
# Bytes per full-size pixel while a non-JPEG image decodes: the decoded source (up to 4) plus
# its RGB conversion (4; PIL stores RGB in 32 bits). Used to size images.max_decoding_pixels.
DECODE_BYTES_PER_PIXEL = 8
# EXIF orientation -> the transpose that shows the image upright (as PIL's ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


class ImageError(ValueError):
    """A candidate image that cannot be used; the message names the candidate."""

    def __init__(self, candidate_id: str, message: str):
        super().__init__(f"candidate {candidate_id!r}: {message}")
        self.candidate_id = candidate_id


class CallOver(Exception):
    """The call's caller went away or its deadline passed: loading stopped (not the image's fault)."""


class PixelBudget:
    """Full-size pixels being decoded at once, all requests together. A large PNG waits for
    room (its call's deadline still checked) instead of growing the process past its memory
    limit; one image larger than the whole budget decodes alone."""

    def __init__(self, pixels: int):
        self.capacity, self.used = max(1, pixels), 0
        self._cv = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, check: Callable[[], None]) -> Iterator[None]:
        pixels = min(pixels, self.capacity)
        with self._cv:
            while self.used + pixels > self.capacity:
                self._cv.wait(0.05)
                check()
            self.used += pixels
        try:
            yield
        finally:
            with self._cv:
                self.used -= pixels
                self._cv.notify_all()


def _never() -> bool:
    return False


@dataclass
class LoadContext:
    """What loading one request's images must respect besides the configuration."""

    deadline: float = math.inf  # time.monotonic() by which the call must be answered
    gone: Callable[[], bool] = _never  # true once the caller has cancelled or disconnected
    budget: PixelBudget | None = None  # the server's decoding budget, shared by every call
    max_pixels: int | None = None  # this request's allowance (images.max_request_pixels)
    used: int = 0  # pixels decoded so far (JPEGs at their reduced size)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self) -> None:
        if self.gone() or time.monotonic() >= self.deadline:
            raise CallOver()

    def take_pixels(self, candidate_id: str, pixels: int) -> None:
        with self._lock:
            self.used += pixels
            if self.max_pixels is not None and self.used > self.max_pixels:
                raise ImageError(candidate_id, f"the request's images need more than {self.max_pixels} pixels "
                                               "decoded (images.max_request_pixels; JPEGs count at their reduced "
                                               "decode size)")


def fetch(candidate_id: str, uri: str, cfg: ImagesConfig, ctx: LoadContext | None = None) -> bytes:
    """The encoded bytes behind a file:// or http(s):// URI, within the configured limits."""
    ctx = ctx or LoadContext()
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in uri):
        raise ImageError(candidate_id, f"URI contains whitespace or control characters: {uri!r}")
    try:
        parsed = urllib.parse.urlsplit(uri)
    except ValueError as e:
        raise ImageError(candidate_id, f"not a valid URI ({e}): {uri!r}") from None
    if parsed.scheme == "file":
        return _read_file(candidate_id, Path(urllib.parse.unquote(parsed.path)), cfg)
    if parsed.scheme in ("http", "https"):
        return _fetch_http(candidate_id, uri, cfg, ctx)
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


def _target(candidate_id: str, uri: str, cfg: ImagesConfig, redirected: bool) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) of an http(s) URI, once it is known to name an allowed host.
    We connect to exactly the host checked here."""
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port  # a non-numeric port raises here, not while connecting
    except ValueError as e:
        raise ImageError(candidate_id, f"not a valid URI ({e}): {uri!r}") from None
    host = parsed.hostname or ""
    if parsed.scheme not in ("http", "https"):
        raise ImageError(candidate_id, f"redirect to an unsupported scheme {parsed.scheme!r}: {uri!r}")
    if "@" in parsed.netloc:
        raise ImageError(candidate_id, f"URIs with credentials (user@host) are not accepted: {uri!r}")
    if not host_allowed(host, cfg.allowed_hosts):
        if redirected:
            raise ImageError(candidate_id, f"redirect to a host not in images.allowed_hosts: {host!r}")
        raise ImageError(candidate_id, f"host {host!r} is not in images.allowed_hosts")
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    return parsed.scheme, host, port, path


def _watch(sock: socket.socket, deadline: float, gone: Callable[[], bool],
           done: threading.Event, fired: threading.Event) -> None:
    """Cut the connection at the deadline or when the caller goes away: a socket timeout
    bounds one read, not a host that sends a byte every second."""
    while not done.wait(0.05):
        if time.monotonic() >= deadline or gone():
            fired.set()
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked read
            except OSError:
                pass
            return


def _fetch_http(candidate_id: str, uri: str, cfg: ImagesConfig, ctx: LoadContext) -> bytes:
    # One deadline for the whole download, redirects included: the call's, or fetch_timeout_s.
    deadline = min(ctx.deadline, time.monotonic() + cfg.fetch_timeout_s)
    for hop in range(MAX_REDIRECTS + 1):
        scheme, host, port, path = _target(candidate_id, uri, cfg, redirected=hop > 0)
        remaining = deadline - time.monotonic()
        if remaining <= 0 or ctx.gone():
            break
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=remaining, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=remaining)
        done, fired = threading.Event(), threading.Event()
        try:
            conn.connect()  # bounded by the socket timeout; from here on the watchdog is on duty too
            threading.Thread(target=_watch, args=(conn.sock, deadline, ctx.gone, done, fired), daemon=True).start()
            conn.request("GET", path, headers={"User-Agent": "agpis"})
            resp = conn.getresponse()
            if resp.status in (301, 302, 303, 307, 308):
                uri = urllib.parse.urljoin(uri, resp.getheader("Location") or "")
                continue
            if resp.status != 200:
                raise ImageError(candidate_id, f"fetching {uri} failed: HTTP {resp.status} {resp.reason}")
            declared = resp.getheader("Content-Length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                raise ImageError(candidate_id, f"{uri} is {declared} bytes; the limit is {cfg.max_bytes}")
            data = resp.read(cfg.max_bytes + 1)  # never trust Content-Length alone
        except ImageError:
            raise
        except (http.client.HTTPException, OSError, ValueError) as e:
            # Bad URLs (InvalidURL), answers that are not HTTP (BadStatusLine), huge header lines
            # (LineTooLong), refused connections, names that do not resolve, TLS errors.
            if fired.is_set():
                break
            raise ImageError(candidate_id, f"fetching {uri} failed: {type(e).__name__}: {e}") from None
        finally:
            done.set()
            conn.close()
        if fired.is_set():  # cut short: what arrived is a truncated image
            break
        if len(data) > cfg.max_bytes:
            raise ImageError(candidate_id, f"{uri} is larger than the limit of {cfg.max_bytes} bytes")
        return data
    else:
        raise ImageError(candidate_id, f"fetching {uri} failed: more than {MAX_REDIRECTS} redirects")
    ctx.check()  # the caller went away or the call's own deadline passed: not the image's fault
    raise ImageError(candidate_id, f"fetching {uri} timed out (images.fetch_timeout_s = {cfg.fetch_timeout_s:g} s "
                                   "for the whole download)")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any mode PIL opens -> 8-bit RGB; transparent pixels are shown on white.

    PIL's own convert("RGB") clips 16- and 32-bit greyscale at 255, so a 16-bit photo would
    come out almost white: those are scaled from their 16-bit range first. "F" (floats) follows
    PIL's convention of 0..255.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        a = np.asarray(img)
        img = Image.fromarray((np.clip(a, 0, 65535) >> 8).astype(np.uint8), "L")
    elif img.mode == "F":
        img = img.convert("L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or img.has_transparency_data:
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))  # transparent = shown on white
        img.paste(rgba, mask=rgba.getchannel("A"))
        return img
    return img.convert("RGB")


def decode(candidate_id: str, data: bytes, cfg: ImagesConfig, uri: str | None = None,
           ctx: LoadContext | None = None) -> CandidateImage:
    """Decode to RGB at reduced size (JPEG DCT scaling), after checking size and pixel count.

    The pixel count is read from the header before any pixel is decoded, so a decompression
    bomb (a small file claiming a huge image) is refused without allocating it; what a request
    and the whole server may decode at once is bounded too (`LoadContext`).
    """
    ctx = ctx or LoadContext()
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
            if min(width, height) < MIN_SIDE:
                raise ImageError(candidate_id, f"image is {width}x{height} px; at least {MIN_SIDE} px a side "
                                               "is needed to judge it")
            if img.format == "JPEG":
                # Decode at 1/2, 1/4 or 1/8 scale, never below the target size: ~4x faster.
                img.draft("RGB", (cfg.decode_max_side, cfg.decode_max_side))
            orientation = img.getexif().get(0x0112, 1)  # phone photos: honour the orientation tag
            decoded = img.size[0] * img.size[1]  # JPEG: the reduced size draft chose
            ctx.take_pixels(candidate_id, decoded)
            ctx.check()
            with ctx.budget.hold(decoded, ctx.check) if ctx.budget else _nothing():
                pixels = _pixels(img, orientation, cfg.decode_max_side)
    except (ImageError, CallOver):
        raise
    except UnidentifiedImageError:
        raise ImageError(candidate_id, "not a readable image (unrecognised format)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(candidate_id, f"not a readable image ({e})") from None
    if exif_swaps(width, height, pixels):
        width, height = height, width
    return CandidateImage(candidate_id, np.ascontiguousarray(pixels), (width, height), uri)


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _pixels(img: Image.Image, orientation: int, max_side: int) -> np.ndarray:
    """Decoded, upright RGB pixels, longest side about `max_side` (never under MIN_SIDE a side)."""
    img = to_rgb(img)
    # Shrink in PIL before copying out, so a large PNG costs its RGB decode and no full-size copy.
    factor = min(max(img.size) // max_side, min(img.size) // MIN_SIDE)
    if factor > 1:
        img = img.reduce(factor)
    if orientation in _UPRIGHT:
        img = img.transpose(_UPRIGHT[orientation])
    pixels = np.asarray(img)
    if max(pixels.shape[:2]) > 1.5 * max_side:  # draft or reduce could not shrink enough
        f = max(max_side / max(pixels.shape[:2]), MIN_SIDE / min(pixels.shape[:2]))
        size = (max(MIN_SIDE, round(pixels.shape[1] * f)), max(MIN_SIDE, round(pixels.shape[0] * f)))
        pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    return pixels


def exif_swaps(width: int, height: int, pixels: np.ndarray) -> bool:
    """True when the EXIF rotation turned a landscape header into a portrait image (or back)."""
    h, w = pixels.shape[:2]
    return (width > height) != (w > h) and width != height and w != h


def load_candidate(candidate_id: str, cfg: ImagesConfig, data: bytes | None = None,
                   uri: str | None = None, ctx: LoadContext | None = None) -> tuple[CandidateImage, bytes]:
    """Bytes or a URI -> (decoded image, encoded bytes). Exactly one source must be given."""
    if (data is None) == (uri is None) or (uri is not None and not uri):
        raise ImageError(candidate_id, "give either the image bytes or a URI")
    if data is None:
        data = fetch(candidate_id, uri, cfg, ctx)
    return decode(candidate_id, data, cfg, uri, ctx), data
