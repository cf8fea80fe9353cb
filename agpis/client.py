"""A channel to the service that sends the bearer token with every call (demo, bench, tests).

    with open_channel("127.0.0.1:50051", token="...") as channel:
        stub = agpis_pb2_grpc.SequenceServiceStub(channel)

With `root_cert` (PEM bytes) the channel uses TLS and checks the server against that
certificate; `server_name` overrides the name checked (a test certificate for "localhost").
"""
from __future__ import annotations

import collections
import secrets
from pathlib import Path

import grpc

MAX_MESSAGE = 64 << 20


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                   "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, d):
        return _Details(d.method, d.timeout, [*(d.metadata or ()), self.header], d.credentials,
                        d.wait_for_ready, d.compression)

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)


def open_channel(address: str, token: str | None = None, root_cert: bytes | None = None,
                 server_name: str | None = None) -> grpc.Channel:
    options = [("grpc.max_send_message_length", MAX_MESSAGE), ("grpc.max_receive_message_length", MAX_MESSAGE)]
    if root_cert is not None:
        if server_name:
            options.append(("grpc.ssl_target_name_override", server_name))
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_cert), options)
    else:
        channel = grpc.insecure_channel(address, options)
    return grpc.intercept_channel(channel, _BearerToken(token)) if token else channel


def new_token_file(path: str | Path) -> str:
    """Write one fresh random token to `path` (a throw-away server's server.api_tokens_file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def first_token(path: str | Path) -> str:
    """The first token of a tokens file (one per line, '#' comments): what a client sends."""
    for line in Path(path).read_text().splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            return token
    raise ValueError(f"{path}: no token in it")
