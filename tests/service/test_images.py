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
from agpis.images import CallOver, ImageError, LoadContext, decode, load_candidate, to_rgb
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
        elif self.path == "/drip.jpg":  # a byte every 0.1 s: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", str(len(JPEG)))
            self.end_headers()
            for i in range(len(JPEG)):
                self.wfile.write(JPEG[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/not-http":  # an allowed host that does not speak HTTP
            self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        elif self.path == "/long-header":  # one 70 KB header line
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
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
    server.handle_error = lambda *_: None  # clients that hang up on purpose are not news
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


@pytest.mark.parametrize("uri,message", [
    ("http://127.0.0.1:{port}\\@localhost/ok.jpg", "credentials"),
    ("http://local\thost:{port}/ok.jpg", "control characters"),
    ("http://localhost:{port}x/ok.jpg", "not a valid URI"),
    ("http://localhost:{port}/not-http", "BadStatusLine"),
    ("http://localhost:{port}/long-header", "LineTooLong"),
])
def test_bad_uris_and_bad_answers_are_image_errors(http_base, uri, message):
    """Regression (issue 15, defect 3): http.client's errors and ValueError escaped as INTERNAL."""
    port = http_base.rsplit(":", 1)[1]
    with pytest.raises(ImageError, match=message) as e:
        load_candidate("remote-7", ImagesConfig(allowed_hosts=["localhost", "127.0.0.1"]), uri=uri.format(port=port))
    assert e.value.candidate_id == "remote-7"


def test_fetch_timeout_bounds_the_whole_download(http_base):
    """Regression (issue 15, defect 4): the timeout applied to each read, so a host sending a
    byte every 0.1 s kept the download going for minutes."""
    t0 = time.monotonic()
    with pytest.raises(ImageError, match="timed out"):
        load_candidate("drip", ImagesConfig(allowed_hosts=["localhost"], fetch_timeout_s=0.5),
                       uri=f"{http_base}/drip.jpg")
    assert time.monotonic() - t0 < 2.0


def test_fetch_stops_when_the_caller_has_gone(http_base):
    gone = threading.Event()
    threading.Timer(0.3, gone.set).start()
    t0 = time.monotonic()
    with pytest.raises(CallOver):
        load_candidate("drip", ImagesConfig(allowed_hosts=["localhost"], fetch_timeout_s=30),
                       uri=f"{http_base}/drip.jpg", ctx=LoadContext(gone=gone.is_set))
    assert time.monotonic() - t0 < 2.0


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("size", [(1, 1), (800, 4), (4, 600)])
def test_images_too_small_to_judge_are_refused(size):
    """Regression (issue 15, defect 1): a 1x1 JPEG or an 800x4 banner reached stage 1 and
    became INTERNAL; now it is an ImageError naming the candidate (INVALID_ARGUMENT)."""
    data = jpeg_bytes(np.full((size[1], size[0], 3), 128, np.uint8))
    with pytest.raises(ImageError, match="at least 8 px a side") as e:
        decode("tiny-1", data, ImagesConfig())
    assert e.value.candidate_id == "tiny-1"


def test_long_thin_images_keep_8_px_after_reduction():
    im = decode("banner", png_bytes(Image.new("RGB", (4000, 40), (200, 30, 30))), ImagesConfig())
    assert min(im.pixels.shape[:2]) >= 8 and im.orig_size == (4000, 40)


GREY16 = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)  # black to white


@pytest.mark.parametrize("mode", ["I;16", "I", "F", "L", "LA", "P", "P-transparent", "RGBA", "CMYK", "1"])
def test_every_mode_decodes_to_the_right_brightness(mode):
    """Regression (issue 15, defect 6): a 16-bit greyscale PNG decoded almost white."""
    grey8 = (GREY16 >> 8).astype(np.uint8)
    if mode == "I;16":
        img = Image.open(io.BytesIO(png_bytes(Image.fromarray(GREY16))))  # a real 16-bit PNG
        assert img.mode == "I;16"
    elif mode == "I":
        img = Image.fromarray(GREY16.astype(np.int32))
    elif mode == "F":
        img = Image.fromarray(grey8.astype(np.float32))  # PIL's convention: 0..255
    elif mode == "P-transparent":
        img = Image.fromarray(grey8).convert("P")
        img.info["transparency"] = int(np.asarray(img)[0, 0])  # the black corner's palette entry
        img = Image.open(io.BytesIO(png_bytes(img)))
    elif mode == "CMYK":
        buf = io.BytesIO()
        Image.fromarray(np.stack([grey8] * 3, -1)).convert("CMYK").save(buf, "JPEG", quality=95)
        img = Image.open(io.BytesIO(buf.getvalue()))
        assert img.mode == "CMYK"
    elif mode == "1":
        img = Image.fromarray(grey8 >= 128)
    else:
        img = Image.fromarray(grey8).convert(mode)
    rgb = np.asarray(to_rgb(img)).astype(int)
    assert rgb.shape == (64, 64, 3)
    want = grey8.astype(int) if mode != "1" else (grey8 >= 128) * 255
    if mode == "P-transparent":
        assert tuple(rgb[0, 0]) == (255, 255, 255)  # transparent: shown on white
        rgb[0, 0], want = want[0, 0], want.copy()
    elif mode in ("LA", "RGBA"):
        pass  # fully opaque: unchanged
    assert np.abs(rgb.mean(axis=2) - want).mean() < 3, f"{mode}: mean {rgb.mean():.0f}, want {want.mean():.0f}"


def test_16_bit_png_through_decode_is_not_washed_out():
    im = decode("g16", png_bytes(Image.fromarray(np.full((64, 64), 16000, np.uint16))), ImagesConfig())
    assert abs(int(im.pixels.mean()) - 16000 // 256) <= 1
