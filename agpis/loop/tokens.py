"""Reviewer tokens: one secret per reviewer, stored in Redis as its sha256 only.

`agpis reviewers add NAME` prints the token once; the web app maps a token to the reviewer's
name, which is also their consumer name in the review group (so the queue never hands one
entry to two reviewers).
"""
from __future__ import annotations

import hashlib
import re
import secrets

import redis

KEY = "agpis:reviewers"
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_reviewer(r: redis.Redis, name: str) -> str:
    if not NAME_RE.match(name) or name == "janitor":
        raise ValueError(f"reviewer names are 1-64 letters, digits, '_.@-' (and not 'janitor'); got {name!r}")
    token = secrets.token_urlsafe(24)
    r.hset(KEY, _digest(token), name)
    return token


def reviewer_for(r: redis.Redis, token: str) -> str | None:
    if not token:
        return None
    name = r.hget(KEY, _digest(token))
    return name.decode() if name else None


def list_reviewers(r: redis.Redis) -> list[str]:
    return sorted({v.decode() for v in r.hvals(KEY)})


def remove_reviewer(r: redis.Redis, name: str) -> int:
    """Revoke every token of this reviewer. -> how many."""
    gone = [k for k, v in r.hgetall(KEY).items() if v.decode() == name]
    if gone:
        r.hdel(KEY, *gone)
    return len(gone)
