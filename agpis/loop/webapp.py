"""`agpis review-ui`: the reviewers' web app, on the same queue and consumer group as the
`agpis review` CLI.

A reviewer signs in with their token (`agpis reviewers add NAME`), sees the title, the three
images in order, the removed candidates with their reasons, and the model's score, predicted
rule and feedback; approves, or rejects with a catalogue rule and a sentence (prefilled with
the model's). Standard library HTTP server, one static page, a small JSON API:

    POST /api/login {token}         sets an HttpOnly cookie (images need it too)
    GET  /api/next                  the reviewer's entry (or a new one), {"empty": true}, or 503
    POST /api/verdict {entry_id, verdict: approve|reject, rule, feedback}
    GET  /api/rules, /api/stats, /image?uri=...
"""
from __future__ import annotations

import http.server
import json
import logging
import threading
import urllib.parse
from http import HTTPStatus
from http.cookies import SimpleCookie
from pathlib import Path

import redis

from agpis import rules
from agpis.config import Config
from agpis.imagestore import ImageStore
from agpis.loop import tokens
from agpis.queue import NotPending, QueueError, ReviewQueue
from agpis.redisconn import RedisHandle, RedisUnavailable

log = logging.getLogger("agpis.review_ui")
STATIC = Path(__file__).parent / "static"
COOKIE = "agpis_token"
MAX_BODY = 64 * 1024


class ReviewApp:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.store = ImageStore(cfg.queue.image_store)
        self._handle: RedisHandle | None = None
        self._lock = threading.Lock()
        # Images the page may show: the image store and the configured file roots, nothing else.
        self.image_roots = [self.store.root + "/"] + [Path(r).resolve().as_uri() + "/" for r in cfg.images.file_roots]

    def queue(self) -> ReviewQueue:
        with self._lock:
            if self._handle is None:
                self._handle = RedisHandle(self.cfg.queue)
            return ReviewQueue(self._handle.client, self.cfg.queue)

    @property
    def where(self) -> str:
        return self._handle.where if self._handle else (self.cfg.queue.redis_url or "the embedded Valkey")

    def image_url(self, uri: str) -> str:
        if uri.startswith(("http://", "https://")):
            return uri  # the reviewer's browser loads it from the CDN itself
        return "/image?" + urllib.parse.urlencode({"uri": uri})

    def image_allowed(self, uri: str) -> bool:
        return "/../" not in uri and any(uri.startswith(root) for root in self.image_roots)

    def item_json(self, item) -> dict:
        p = item.payload
        cands = {c["id"]: c for c in p.get("candidates", [])}
        removed_ids = {r["id"] for r in p.get("removed", [])}
        return {
            "entry_id": item.entry_id, "product_id": item.product_id, "deliveries": item.deliveries,
            "title": p.get("title", ""), "category": p.get("category", ""),
            "p_qualified": p.get("p_qualified"), "threshold": p.get("threshold"),
            "predicted_rule": p.get("predicted_rule", ""), "feedback": p.get("feedback", ""),
            "uncertain": bool(p.get("uncertain", False)), "novelty": p.get("novelty"),
            "model_versions": p.get("model_versions", {}),
            "sequence": [{"id": cid, "position": n, "url": self.image_url(cands.get(cid, {}).get("uri", "")),
                          "findings": cands.get(cid, {}).get("findings", [])}
                         for n, cid in enumerate(p.get("sequence", []), 1)],
            "removed": [{"id": r["id"], "rule": r["rule"], "reason": r["reason"],
                         "url": self.image_url(cands.get(r["id"], {}).get("uri", ""))} for r in p.get("removed", [])],
            "unused": [{"id": cid, "url": self.image_url(c.get("uri", ""))} for cid, c in cands.items()
                       if cid not in p.get("sequence", []) and cid not in removed_ids],
        }

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None


def make_handler(app: ReviewApp):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "agpis-review-ui"

        def log_message(self, fmt, *args):
            log.debug("http", extra={"line": fmt % args})

        # -- plumbing -------------------------------------------------------------------------
        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _token(self) -> str:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                return auth[7:].strip()
            cookie = SimpleCookie(self.headers.get("Cookie", ""))
            return cookie[COOKIE].value if COOKIE in cookie else ""

        def _reviewer(self) -> str | None:
            """The signed-in reviewer, or None after answering 401/503 ourselves."""
            try:
                name = tokens.reviewer_for(app.queue().r, self._token())
            except (RedisUnavailable, redis.RedisError) as e:
                self._unreachable(e)
                return None
            if name is None:
                self._json(401, {"error": "sign in with your reviewer token (ask an admin: agpis reviewers add NAME)"})
            return name

        def _unreachable(self, e: Exception) -> None:
            log.warning("review queue unreachable", extra={"error": str(e)})
            self._json(503, {"error": f"The review queue is unreachable ({app.where}). Nothing is lost; "
                                      f"this page retries by itself.", "detail": str(e)})

        def _body(self) -> dict | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": "request too large"})
                return None
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._json(400, {"error": "body must be JSON"})
                return None

        # -- routes ---------------------------------------------------------------------------
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                data = (STATIC / "review.html").read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif url.path == "/api/rules":
                self._json(200, {"rules": [{"id": r.id, "title": r.title, "category": r.category,
                                            "description": r.description} for r in rules.RULES]
                                 + [{"id": rules.OTHER, "title": "Other", "category": "none",
                                     "description": "A rule not in the catalogue (say which in the feedback)."}]})
            elif url.path == "/api/next":
                self._next()
            elif url.path == "/api/stats":
                if self._reviewer() is not None:
                    try:
                        self._json(200, app.queue().stats())
                    except (RedisUnavailable, redis.RedisError) as e:
                        self._unreachable(e)
            elif url.path == "/image":
                self._image(urllib.parse.parse_qs(url.query).get("uri", [""])[0])
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            body = self._body()
            if body is None:
                return
            if url.path == "/api/login":
                self._login(str(body.get("token", "")))
            elif url.path == "/api/verdict":
                self._verdict(body)
            else:
                self._json(404, {"error": "not found"})

        def _login(self, token: str) -> None:
            try:
                name = tokens.reviewer_for(app.queue().r, token)
            except (RedisUnavailable, redis.RedisError) as e:
                return self._unreachable(e)
            if name is None:
                return self._json(401, {"error": "unknown token"})
            cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={12 * 3600}"
            self._json(200, {"reviewer": name}, {"Set-Cookie": cookie})

        def _next(self) -> None:
            reviewer = self._reviewer()
            if reviewer is None:
                return
            try:
                item = app.queue().next(reviewer)
                stats = app.queue().stats()
            except (RedisUnavailable, redis.RedisError) as e:
                return self._unreachable(e)
            if item is None:
                return self._json(200, {"empty": True, "reviewer": reviewer, "stats": stats})
            self._json(200, {"reviewer": reviewer, "item": app.item_json(item), "stats": stats})

        def _verdict(self, body: dict) -> None:
            reviewer = self._reviewer()
            if reviewer is None:
                return
            verdict = body.get("verdict")
            if verdict not in ("approve", "reject"):
                return self._json(400, {"error": "verdict must be 'approve' or 'reject'"})
            try:
                decision = app.queue().verdict(str(body.get("entry_id", "")), reviewer, verdict == "approve",
                                               str(body.get("rule", "")), str(body.get("feedback", "")))
            except NotPending as e:
                return self._json(409, {"error": str(e)})
            except QueueError as e:
                return self._json(400, {"error": str(e)})
            except (RedisUnavailable, redis.RedisError) as e:
                return self._unreachable(e)
            log.info("verdict", extra={"reviewer": reviewer, "entry_id": body.get("entry_id"), "verdict": verdict,
                                       "rule": body.get("rule", "")})
            self._json(200, {"decision_id": decision})

        def _image(self, uri: str) -> None:
            if self._reviewer() is None:
                return
            if not app.image_allowed(uri):
                return self._json(403, {"error": "not an image of the review store"})
            try:
                data = app.store.get(uri)
            except (OSError, ValueError) as e:
                return self._json(404, {"error": f"image not found: {e}"})
            from agpis.imagestore import extension

            kind = {"jpg": "jpeg"}.get(extension(data), extension(data))
            self.send_response(200)
            self.send_header("Content-Type", f"image/{kind}")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "private, max-age=3600")
            self.end_headers()
            self.wfile.write(data)

    return Handler


class ReviewServer:
    """The web app on host:port (0 = a free port), in a background thread."""

    def __init__(self, cfg: Config, host: str = "127.0.0.1", port: int = 8080):
        self.app = ReviewApp(cfg)
        self.httpd = http.server.ThreadingHTTPServer((host, port), make_handler(self.app))
        self.httpd.daemon_threads = True
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="review-ui", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "ReviewServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.app.close()
