"""`dcgan serve`: a latent-space explorer for one trained generator, in the browser.

The page (static/, shipped in the package, no CDN) shows a grid of samples; click two for the
interpolation strip between them (linear and spherical, paper §6.1), pick groups A, B, C for
A - B + C in the layout of the paper's Fig. 7 (§6.3), and walk any sample along B -> A with a
slider (Fig. 8). Every image can be downloaded with its z.

Samples are named, never sent: sample i of a grid is row i of `noise(n, nz, z_dist, seed)`,
exactly what `dcgan sample --seed S --num N` draws, so the explorer's grid for (seed, n) is the
same PNG as that command's. Every route is a GET with a few bounded query fields (unknown,
repeated or invalid ones get a 4xx JSON error); no request names a file; every request that
computes (PNG or JSON) holds the one slot (`Explorer.slot`): one runs at a time and at most
`MAX_WAITING` more wait, the rest get 503. A request whose Host header is not a name the server
is bound to gets 400 (a DNS-rebound web page cannot drive it). Connections (`guarded_protocol`)
must send a whole request head within `HEAD_TIMEOUT` seconds, and at `MAX_CONNECTIONS` a new one
closes the oldest idle one, so idle or slow sockets cannot lock the explorer out.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..errors import DCGANError
from ..latent import direction, fig7, interpolate
from ..models import Generator
from ..pixels import to_uint8
from ..sampling import generate, grid_nrow, noise, png_bytes

log = logging.getLogger(__name__)

MAX_N = 256  # samples in one grid
MAX_SEED = 2**32 - 1
MAX_STEPS = 32  # points of an interpolation strip
MAX_GROUP = 8  # exemplars per concept of A - B + C (the paper averages 3)
MAX_STRENGTH = 4.0  # |s| of the B -> A walk
MAX_QUERY = 1024  # bytes of a query string
MAX_WAITING = 32  # requests queued for the generator before 503
MAX_Z_NUMBERS = 2**20  # n * nz of one request: the z it holds and sends as JSON (20 MB at most)
MAX_CONNECTIONS = 64  # open connections; one more closes the oldest idle one
HEAD_TIMEOUT = 10.0  # seconds a connection has to send a whole request head (idle or slow sockets)
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open after a response
LOOPBACK = ("127.0.0.1", "localhost", "::1")
STATIC = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript"),
          "/app.css": ("app.css", "text/css")}
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                      "base-uri 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


# --- query fields --------------------------------------------------------------------------------


def _digits(v: Any) -> Any:
    """Whole numbers only as plain digits: '1.0', '1e3', '+5', ' 7' are refused, not coerced."""
    if isinstance(v, str) and not re.fullmatch(r"[0-9]{1,12}", v):
        raise ValueError("must be a whole number written in digits")
    return v


def _group(v: Any) -> Any:
    """'3,17,42' -> [3, 17, 42]: 1..MAX_GROUP sample numbers."""
    if isinstance(v, list):  # a query field's values (FastAPI collects repeats for list fields)
        if len(v) != 1:
            raise ValueError("give the sample numbers once, separated by commas, e.g. 3,17,42")
        v = v[0]
    if isinstance(v, str):
        if not re.fullmatch(rf"[0-9]{{1,3}}(,[0-9]{{1,3}}){{0,{MAX_GROUP - 1}}}", v):
            raise ValueError(f"must be 1 to {MAX_GROUP} sample numbers separated by commas, e.g. 3,17,42")
        return [int(t) for t in v.split(",")]
    return v


Seed = Annotated[int, BeforeValidator(_digits), Field(ge=0, le=MAX_SEED)]
Count = Annotated[int, BeforeValidator(_digits), Field(ge=1, le=MAX_N)]
Index = Annotated[int, BeforeValidator(_digits), Field(ge=0, lt=MAX_N)]
Group = Annotated[list[int], BeforeValidator(_group)]


class Draw(BaseModel):
    """A grid: `n` samples from noise seed `seed`. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    seed: Seed = 0
    n: Count = 64
    format: Literal["png", "json"] = "png"  # json: the z of every image instead of the PNG

    def _check(self, **indices: int | list[int]) -> None:
        for name, idx in indices.items():
            bad = [i for i in ([idx] if isinstance(idx, int) else idx) if i >= self.n]
            if bad:
                raise ValueError(f"{name}: sample number(s) {bad} outside the grid of n={self.n}")


class ImageQuery(Draw):
    index: Index

    @model_validator(mode="after")
    def _fits(self) -> ImageQuery:
        self._check(index=self.index)
        return self


class InterpolateQuery(Draw):
    a: Index
    b: Index
    steps: Annotated[int, BeforeValidator(_digits), Field(ge=2, le=MAX_STEPS)] = 9
    mode: Literal["linear", "spherical"] = "linear"

    @model_validator(mode="after")
    def _fits(self) -> InterpolateQuery:
        self._check(a=self.a, b=self.b)
        return self


class ArithmeticQuery(Draw):
    a: Group
    b: Group
    c: Group

    @model_validator(mode="after")
    def _fits(self) -> ArithmeticQuery:
        self._check(a=self.a, b=self.b, c=self.c)
        return self


class WalkQuery(Draw):
    a: Group
    b: Group
    base: Index
    strength: Annotated[float, Field(ge=-MAX_STRENGTH, le=MAX_STRENGTH, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _fits(self) -> WalkQuery:
        self._check(a=self.a, b=self.b, base=self.base)
        return self


# --- the model behind the page -----------------------------------------------------------------


class Busy(Exception):
    """More requests wait for the generator than `MAX_WAITING`."""


class Refused(Exception):
    """A request this model cannot answer (status, one-line message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Explorer:
    """One generator (eval mode, CPU or GPU) and the facts the page shows about it."""

    G: Generator
    cfg: Config
    facts: dict[str, Any]
    source: str
    _gate: threading.Lock = field(default_factory=threading.Lock)
    _count: threading.Lock = field(default_factory=threading.Lock)
    _waiting: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    @property
    def max_n(self) -> int:
        """Samples in one grid: MAX_N, fewer for a model whose z is so long that n * nz numbers
        would pass MAX_Z_NUMBERS."""
        return max(1, min(MAX_N, MAX_Z_NUMBERS // self.cfg.model.nz))

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """The one slot every computing request holds for all of its work (z, G, PNG or JSON):
        one at a time, at most MAX_WAITING waiting, the rest get 503 (`Busy`)."""
        with self._count:
            if self._waiting >= MAX_WAITING:
                raise Busy
            self._waiting += 1
        try:
            with self._gate:
                yield
        finally:
            with self._count:
                self._waiting -= 1

    def z(self, q: Draw) -> torch.Tensor:
        """(n, nz) on the CPU: exactly `dcgan sample --seed seed --num n`'s latent vectors."""
        if q.n > self.max_n:
            raise Refused(422, f"n: at most {self.max_n} samples for this model (nz={self.cfg.model.nz})")
        return noise(q.n, self.cfg.model.nz, self.cfg.model.z_dist, q.seed)

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) -> images in [-1, 1] on the CPU (call it inside `slot`)."""
        with torch.inference_mode():
            return generate(self.G, z.to(self.device)).cpu()

    def info(self) -> dict[str, Any]:
        m, d, f = self.cfg.model, self.cfg.data, self.facts
        evals = f.get("evals") or []
        return {"nz": m.nz, "image_size": d.image_size, "channels": d.channels, "z_dist": m.z_dist,
                "dataset": d.name, "split": d.split, "step": f.get("step"), "epoch": f.get("epoch"),
                "images_shown": f.get("images_shown"), "source": f.get("source", Path(self.source).name),
                "best": f.get("best"), "last_eval": evals[-1] if evals else None,
                "eval_protocol": {k: getattr(self.cfg.eval, k) for k in ("num_samples", "split", "seed", "best")},
                "limits": {"n": self.max_n, "seed": MAX_SEED, "steps": MAX_STEPS, "group": MAX_GROUP,
                           "strength": MAX_STRENGTH}}


# --- responses -----------------------------------------------------------------------------------


def png_grid(images: torch.Tensor, nrow: int) -> bytes:
    """Images in [-1, 1] as a PNG grid, byte for byte what `sampling.save_grid` writes."""
    from torchvision.utils import save_image

    buf = io.BytesIO()
    save_image((images.float() + 1) / 2, buf, format="png", nrow=nrow, padding=2, pad_value=1.0)
    return buf.getvalue()


def png_image(image: torch.Tensor) -> bytes:
    """One (C, S, S) image in [-1, 1] at the model's resolution."""
    return png_bytes(to_uint8(image[None])[0])


def _reply(q: Draw, png: bytes, z: dict[str, Any], name: str) -> Response:
    """The PNG, or with format=json the z behind it (rounded floats would break exactness: full
    float32 precision as Python floats)."""
    stem = f"dcgan-{name}-seed{q.seed}-n{q.n}"
    if q.format == "json":
        body = json.dumps({"seed": q.seed, "n": q.n, **{k: v.tolist() if torch.is_tensor(v) else v
                                                        for k, v in z.items()}})
        return Response(body, media_type="application/json", headers={
            **HEADERS, "Content-Disposition": f'inline; filename="{stem}-z.json"'})
    return Response(png, media_type="image/png",
                    headers={**HEADERS, "Content-Disposition": f'inline; filename="{stem}.png"'})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=HEADERS)


# --- the app -------------------------------------------------------------------------------------


def host_names(bound: str) -> frozenset[str]:
    """The Host header names the explorer answers: loopback names, the --host it is bound to,
    and the machine's names when bound to every interface. IP literals are always accepted
    (DNS rebinding needs a name)."""
    names = {"localhost", bound.strip("[]").lower()}
    if bound in ("0.0.0.0", "::", ""):
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(n for n in names if n)


def _host_ok(header: str | None, names: frozenset[str]) -> bool:
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):  # [v6]:port
        host = host[1:host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host in names


def _repeated(query: bytes) -> list[str]:
    """Query fields given more than once (as Starlette decodes them)."""
    seen: set[str] = set()
    twice = []
    for key, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if key in seen and key not in twice:
            twice.append(key)
        seen.add(key)
    return twice


def create_app(ex: Explorer, hosts: frozenset[str] | None = None) -> FastAPI:
    """The explorer's routes over `ex`; no docs pages (they load from a CDN). `hosts`: the Host
    header names to answer besides IP literals (default: those of a loopback bind)."""
    app = FastAPI(title="dcgan explorer", docs_url=None, redoc_url=None, openapi_url=None)
    _guard(app, host_names("127.0.0.1") if hosts is None else hosts)
    _error_replies(app)
    _pages(app, ex)
    _computing_routes(app, ex)
    return app


def _guard(app: FastAPI, names: frozenset[str]) -> None:
    """Refuse, before any route runs: an unknown Host, a long query, a body, query fields on a
    page, a repeated field."""

    @app.middleware("http")
    async def bounded(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host")
        if not _host_ok(host, names):
            return _error(400, f"Host {str(host)[:60]!r} is not a name this explorer is served under; open it as "
                               "http://127.0.0.1:PORT/ (or the --host it was started with)")
        query = request.scope.get("query_string", b"")
        if len(query) > MAX_QUERY:
            return _error(414, f"the query is longer than {MAX_QUERY} bytes")
        if request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers:
            return _error(413, "requests carry no body; use GET with query fields")
        if query and request.url.path in (*STATIC, "/api/info"):
            return _error(422, f"{request.url.path} takes no query fields")
        twice = _repeated(query)
        if twice:
            return _error(422, f"{twice[0][:40]}: given more than once; give each field once")
        return await call_next(request)


def _error_replies(app: FastAPI) -> None:
    """Every error as {"error": one line} with the page's headers."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "query"
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if e.get("type") != "extra_forbidden" else f"{where}: unknown field")
        return _error(422, "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy) -> JSONResponse:
        return _error(503, "the generator is busy; retry in a moment")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return _error(exc.status, exc.message)


def _pages(app: FastAPI, ex: Explorer) -> None:
    """The page (static/, read once) and /api/info: nothing to compute, so no slot."""
    assets = {route: (resources.files(__package__).joinpath("static", name).read_bytes(), media)
              for route, (name, media) in STATIC.items()}

    def page(route: str) -> Any:
        body, media = assets[route]
        return lambda: Response(body, media_type=media, headers=HEADERS)

    for route in STATIC:
        app.add_api_route(route, page(route), methods=["GET"], include_in_schema=False)

    @app.get("/api/info")
    def info() -> JSONResponse:
        return JSONResponse(ex.info(), headers=HEADERS)


def _computing_routes(app: FastAPI, ex: Explorer) -> None:
    """The routes that run G; each does all of its work, PNG or JSON, inside the one slot."""

    @app.get("/api/sample")
    def sample(q: Annotated[Draw, Query()]) -> Response:
        with ex.slot():
            z = ex.z(q)
            return _reply(q, png_grid(ex.render(z), grid_nrow(q.n)) if q.format == "png" else b"", {"z": z}, "grid")

    @app.get("/api/image")
    def image(q: Annotated[ImageQuery, Query()]) -> Response:
        with ex.slot():
            z = ex.z(q)[q.index:q.index + 1]
            return _reply(q, png_image(ex.render(z)[0]) if q.format == "png" else b"",
                          {"index": q.index, "z": z[0]}, f"sample{q.index}")

    @app.get("/api/interpolate")
    def interpolate_(q: Annotated[InterpolateQuery, Query()]) -> Response:
        with ex.slot():
            z_all = ex.z(q)
            z = interpolate(z_all[q.a], z_all[q.b], q.steps, q.mode)
            png = png_grid(ex.render(z), q.steps) if q.format == "png" else b""
            return _reply(q, png, {"a": q.a, "b": q.b, "mode": q.mode, "z": z}, f"{q.mode}-{q.a}-{q.b}")

    @app.get("/api/arithmetic")
    def arithmetic(q: Annotated[ArithmeticQuery, Query()]) -> Response:
        with ex.slot():
            z_all = ex.z(q)
            fig = fig7(z_all, (q.a, q.b, q.c), noise_scale=0.25, seed=q.seed)  # §6.3: the paper's +-0.25
            png = png_bytes(fig.image(ex.render(fig.latents(z_all)))) if q.format == "png" else b""
            return _reply(q, png, {"a": q.a, "b": q.b, "c": q.c, "means": fig.means, "result": fig.result,
                                   "block": fig.block}, "arithmetic")

    @app.get("/api/walk")
    def walk(q: Annotated[WalkQuery, Query()]) -> Response:
        with ex.slot():
            z_all = ex.z(q)
            z = z_all[q.base] + q.strength * direction(z_all, q.b, q.a)  # Fig. 8: along B -> A
            png = png_image(ex.render(z[None])[0]) if q.format == "png" else b""
            return _reply(q, png, {"a": q.a, "b": q.b, "base": q.base, "strength": q.strength, "z": z},
                          f"walk{q.base}-s{q.strength:g}")


def load_explorer(checkpoint: str, device: str = "auto") -> Explorer:
    from ..checkpoint import load_models
    from ..devices import pick_device
    from .export import run_facts

    G, _, cfg, ckpt = load_models(checkpoint, pick_device(device))
    return Explorer(G.eval(), cfg, run_facts(checkpoint, cfg, ckpt), str(checkpoint))


def check_host(host: str) -> None:
    """Warn when the explorer is reachable from other machines (it has no authentication)."""
    if host not in LOOPBACK:
        log.warning("warning: serving on %s: anyone who can reach this machine can use the explorer "
                    "(no authentication); use --host 127.0.0.1 to keep it local", host)


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one), or a one-line error."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
    except OSError as e:
        raise DCGANError(f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --host or --port") from None
    return sock


class HeadTimer:
    """A connection's deadline for its next whole request head: armed when it opens and after
    each response, disarmed when a head has arrived (data trickled in does not re-arm it). At the
    deadline `expire` runs; `since` (when last armed) ranks idle connections oldest first."""

    def __init__(self, timeout: float, expire: Callable[[], None]) -> None:
        self.timeout, self.expire = timeout, expire
        self.handle: asyncio.TimerHandle | None = None
        self.since = 0.0

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.disarm()
        self.since = time.monotonic()
        self.handle = loop.call_later(self.timeout, self._fire)

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _fire(self) -> None:
        self.handle = None
        self.expire()


def guarded_protocol(head_timeout: float = HEAD_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> type:
    """uvicorn's h11 protocol, kept from being locked out by idle, slow or many sockets.

    uvicorn times out a connection only after a response (keep-alive); one that never sends a
    request stays open for ever and counts against `limit_concurrency`, so 64 idle sockets made
    every later request a 503. Here each connection must send a whole request head within
    `head_timeout` seconds of opening or of its last response (`HeadTimer`), and a connection
    opened when `max_connections` are open closes the oldest idle one (no request in progress)
    instead of being refused.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        timer: HeadTimer | None = None

        def connection_made(self, transport: Any) -> None:
            if len(self.connections) >= max_connections:
                idle = [c for c in self.connections if isinstance(c, GuardedH11Protocol) and c.idle()]
                if idle:
                    victim = min(idle, key=lambda c: c.timer.since if c.timer else 0.0)
                    self.connections.discard(victim)
                    victim.close()
            super().connection_made(transport)
            self.timer = HeadTimer(head_timeout, self._expire)
            self.timer.arm(self.loop)

        def idle(self) -> bool:
            """No request in progress: waiting for (the rest of) a request head."""
            return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

        def close(self) -> None:
            if self.timer:
                self.timer.disarm()
            if not self.transport.is_closing():
                self.transport.close()

        def _expire(self) -> None:
            if self.idle():
                self.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.timer and self.conn.their_state is not h11.IDLE:  # a whole request head arrived
                self.timer.disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timer and not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.timer.arm(self.loop)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.timer:
                self.timer.disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def make_server(app: FastAPI, *, head_timeout: float = HEAD_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                keep_alive: int = KEEP_ALIVE) -> Any:
    """The uvicorn server `serve` runs (tests run the same one in a thread)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(head_timeout, max_connections),
                            limit_concurrency=max_connections + 1, timeout_keep_alive=keep_alive,
                            server_header=False, lifespan="off")
    return uvicorn.Server(config)


def serve(checkpoint: str, *, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> None:
    """Run the explorer until Ctrl-C."""
    if not 0 <= port <= 65535:
        raise DCGANError(f"--port {port} is not a TCP port; use 1..65535 (0 picks a free one)")
    app = create_app(load_explorer(checkpoint, device), host_names(host))
    check_host(host)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    log.info("explorer of %s at http://%s:%d/ (Ctrl-C stops it)", checkpoint,
             f"[{host}]" if ":" in host else host, bound)
    with sock:
        make_server(app).run(sockets=[sock])
