"""Image loading: bytes, file:// and http(s):// with every limit, against a real local HTTP server."""
from __future__ import annotations

import http.server
import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from agpis.config import ImagesConfig
from agpis.images import ImageError, decode, load_candidate
from tests.conftest import jpeg_bytes

PIXELS = np.full((600, 800, 3), 255, np.uint8)
PIXELS[200:400, 300:500] = (200, 30, 30)
JPEG = jpeg_bytes(PIXELS)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height: a decompression bomb's calling card."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decode_reduces_size_and_keeps_original_size():
    im = decode("a", JPEG, ImagesConfig(decode_max_side=400))
    assert im.orig_size == (800, 600)
    assert max(im.pixels.shape[:2]) == 400 and im.pixels.dtype == np.uint8
    assert im.scale == pytest.approx(2.0)
    assert tuple(im.pixels[150, 200]) == pytest.approx((200, 30, 30), abs=12)  # the red square, halved


def test_transparent_png_is_shown_on_white():
    rgba = np.zeros((50, 50, 4), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    im = decode("t", buf.getvalue(), ImagesConfig())
    assert im.pixels.min() == 255


@pytest.mark.parametrize("data,message", [
    (b"", "empty"),
    (b"not an image at all", "not a readable image"),
    (JPEG[: len(JPEG) // 3], "not a readable image"),
    (png_header_only(50_000, 50_000), "the limit is"),
])
def test_bad_images_are_refused_naming_the_candidate(data, message):
    with pytest.raises(ImageError, match=message) as e:
        decode("cand-7", data, ImagesConfig())
    assert "cand-7" in str(e.value)


def test_too_many_bytes():
    with pytest.raises(ImageError, match="bytes; the limit is 1000"):
        decode("x", JPEG, ImagesConfig(max_bytes=1000))


def test_file_uris_only_under_configured_roots(tmp_path):
    inside = tmp_path / "root" / "a.jpg"
    inside.parent.mkdir()
    inside.write_bytes(JPEG)
    outside = tmp_path / "b.jpg"
    outside.write_bytes(JPEG)
    link = inside.parent / "link.jpg"
    link.symlink_to(outside)
    cfg = ImagesConfig(file_roots=[str(inside.parent)])
    im, data = load_candidate("a", cfg, uri=inside.as_uri())
    assert data == JPEG and im.orig_size == (800, 600)
    for path in (outside, link):
        with pytest.raises(ImageError, match="only under images.file_roots"):
            load_candidate("b", cfg, uri=path.as_uri())
    with pytest.raises(ImageError, match="only under"):
        load_candidate("c", ImagesConfig(), uri=inside.as_uri())  # no roots: file:// refused


def test_unsupported_scheme_and_missing_source():
    with pytest.raises(ImageError, match="unsupported URI scheme"):
        load_candidate("a", ImagesConfig(), uri="ftp://example.com/a.jpg")
    with pytest.raises(ImageError, match="either the image bytes or a URI"):
        load_candidate("a", ImagesConfig())


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/ok.jpg":
            self._send(200, JPEG)
        elif self.path == "/big.jpg":  # honest Content-Length over the cap
            self._send(200, b"\xff" * 5000)
        elif self.path == "/liar.jpg":  # no Content-Length, body over the cap
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\xff" * 5000)
        elif self.path == "/slow.jpg":
            time.sleep(1.5)
            self._send(200, JPEG)
        elif self.path == "/to-internal":
            self.send_response(302)
            self.send_header("Location", "http://internal.invalid/secret")
            self.end_headers()
        elif self.path == "/to-ok":
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{self.server.server_address[1]}/ok.jpg")
            self.end_headers()
        else:
            self._send(404, b"nope")

    def _send(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_base():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_fetch_from_allowed_host(http_base):
    cfg = ImagesConfig(allowed_hosts=["localhost"])
    im, data = load_candidate("a", cfg, uri=f"{http_base}/ok.jpg")
    assert data == JPEG and im.uri.endswith("/ok.jpg")
    im, _ = load_candidate("a", cfg, uri=f"{http_base}/to-ok")  # redirect to an allowed host
    assert im.orig_size == (800, 600)


@pytest.mark.parametrize("path,cfg,message", [
    ("/ok.jpg", ImagesConfig(), "not in images.allowed_hosts"),
    ("/ok.jpg", ImagesConfig(allowed_hosts=["*.example.com"]), "not in images.allowed_hosts"),
    ("/to-internal", ImagesConfig(allowed_hosts=["localhost"]), "redirect to a host not in"),
    ("/big.jpg", ImagesConfig(allowed_hosts=["localhost"], max_bytes=1000), "the limit is 1000"),
    ("/liar.jpg", ImagesConfig(allowed_hosts=["localhost"], max_bytes=1000), "larger than the limit"),
    ("/slow.jpg", ImagesConfig(allowed_hosts=["localhost"], fetch_timeout_s=0.3), "timed out"),
    ("/missing.jpg", ImagesConfig(allowed_hosts=["localhost"]), "HTTP 404"),
])
def test_http_fetch_refusals(http_base, path, cfg, message):
    with pytest.raises(ImageError, match=message):
        load_candidate("remote", cfg, uri=f"{http_base}{path}")
