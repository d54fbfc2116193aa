"""`dcgan serve`: a latent-space explorer for one trained generator, in the browser.

The page (static/, shipped in the package, no CDN) shows a grid of samples; click two for the
interpolation strip between them (linear and spherical, paper §6.1), pick groups A, B, C for
A - B + C in the layout of the paper's Fig. 7 (§6.3), and walk any sample along B -> A with a
slider (Fig. 8). Every image can be downloaded with its z.

Samples are named, never sent: sample i of a grid is row i of `noise(n, nz, z_dist, seed)`,
exactly what `dcgan sample --seed S --num N` draws, so the explorer's grid for (seed, n) is the
same PNG as that command's. Every route is a GET with a few bounded query fields (unknown or
invalid ones get a 4xx JSON error); no request names a file; one generation runs at a time and
at most `MAX_WAITING` more wait, the rest get 503.
"""

from __future__ import annotations

import io
import json
import logging
import re
import socket
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..errors import DCGANError
from ..models import Generator
from ..paper.arithmetic import concept_mean, direction, with_noise
from ..paper.walk import interpolate
from ..sampling import generate, grid_nrow, noise

log = logging.getLogger(__name__)

MAX_N = 256  # samples in one grid
MAX_SEED = 2**32 - 1
MAX_STEPS = 32  # points of an interpolation strip
MAX_GROUP = 8  # exemplars per concept of A - B + C (the paper averages 3)
MAX_STRENGTH = 4.0  # |s| of the B -> A walk
MAX_QUERY = 1024  # bytes of a query string
MAX_WAITING = 32  # requests queued for the generator before 503
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

    def z(self, q: Draw) -> torch.Tensor:
        """(n, nz) on the CPU: exactly `dcgan sample --seed seed --num n`'s latent vectors."""
        return noise(q.n, self.cfg.model.nz, self.cfg.model.z_dist, q.seed)

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) -> images in [-1, 1] on the CPU; one call at a time, a bounded queue."""
        with self._count:
            if self._waiting >= MAX_WAITING:
                raise Busy
            self._waiting += 1
        try:
            with self._gate, torch.inference_mode():
                return generate(self.G, z.to(self.device)).cpu()
        finally:
            with self._count:
                self._waiting -= 1

    def info(self) -> dict[str, Any]:
        m, d, f = self.cfg.model, self.cfg.data, self.facts
        evals = f.get("evals") or []
        return {"nz": m.nz, "image_size": d.image_size, "channels": d.channels, "z_dist": m.z_dist,
                "dataset": d.name, "split": d.split, "step": f.get("step"), "epoch": f.get("epoch"),
                "images_shown": f.get("images_shown"), "source": f.get("source", Path(self.source).name),
                "best": f.get("best"), "last_eval": evals[-1] if evals else None,
                "eval_protocol": {k: getattr(self.cfg.eval, k) for k in ("num_samples", "split", "seed", "best")},
                "limits": {"n": MAX_N, "seed": MAX_SEED, "steps": MAX_STEPS, "group": MAX_GROUP,
                           "strength": MAX_STRENGTH}}


# --- responses -----------------------------------------------------------------------------------


def png_grid(images: torch.Tensor, nrow: int) -> bytes:
    """Images in [-1, 1] as a PNG grid, byte for byte what `sampling.save_grid` writes."""
    from torchvision.utils import save_image

    buf = io.BytesIO()
    save_image((images.float() + 1) / 2, buf, format="png", nrow=nrow, padding=2, pad_value=1.0)
    return buf.getvalue()


def png_image(image: torch.Tensor) -> bytes:
    """One (C, S, S) image at the model's resolution."""
    from PIL import Image

    from ..data import to_uint8

    u8 = to_uint8(image[None])[0]
    arr = u8[0].numpy() if u8.shape[0] == 1 else u8.permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def png_fig7(ex: list[torch.Tensor], means: torch.Tensor, block: torch.Tensor, labels: list[list[int]]) -> bytes:
    """The paper's Fig. 7: each concept's exemplars over the sample of their mean z, the signs
    between them, then the 3x3 block of results (A - B + C itself in the centre)."""
    from PIL import Image, ImageDraw, ImageFont

    from ..data import to_uint8

    S = means.shape[-1]
    k = max(1, 64 // S)
    T, gap, op, top = S * k, 4, max(24, S * k // 2), 18  # tile, gap, sign column, label band

    def tile(img: torch.Tensor) -> Image.Image:
        u8 = to_uint8(img[None])[0].expand(3, -1, -1)
        return Image.fromarray(u8.permute(1, 2, 0).numpy()).resize((T, T), Image.NEAREST)

    rows = max(len(g) for g in ex) + 1
    height = top + rows * (T + gap) + gap
    width = 3 * (T + op) + 3 * (T + gap) + gap
    im = Image.new("RGB", (width, max(height, top + 3 * (T + gap) + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    try:
        font = ImageFont.load_default(size=14)
        sign_font = ImageFont.load_default(size=max(16, op // 2))
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = sign_font = ImageFont.load_default()
    for col, (name, images) in enumerate(zip("ABC", ex)):
        x = col * (T + op)
        draw.text((x + 2, 2), f"{name}: #{','.join(map(str, labels[col]))}"[:T // 6 + 4], fill=(0, 0, 0), font=font)
        for r, img in enumerate(images):
            im.paste(tile(img), (x, top + r * (T + gap)))
        y_mean = top + (rows - 1) * (T + gap) + gap
        im.paste(tile(means[col]), (x, y_mean))
        draw.rectangle([x - 1, y_mean - 1, x + T, y_mean + T], outline=(200, 0, 0))
        draw.text((x + T + op // 2, y_mean + T // 2), "-+="[col], fill=(0, 0, 0), font=sign_font, anchor="mm")
    x0 = 3 * (T + op)
    draw.text((x0 + 2, 2), "A - B + C (centre) + noise", fill=(0, 0, 0), font=font)
    for i in range(9):
        im.paste(tile(block[i]), (x0 + (i % 3) * (T + gap), top + (i // 3) * (T + gap)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


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


def create_app(ex: Explorer) -> FastAPI:
    """The explorer's routes over `ex`; no docs pages (they load from a CDN)."""
    app = FastAPI(title="dcgan explorer", docs_url=None, redoc_url=None, openapi_url=None)
    assets = {route: (resources.files(__package__).joinpath("static", name).read_bytes(), media)
              for route, (name, media) in STATIC.items()}

    @app.middleware("http")
    async def bounded(request: Request, call_next: Any) -> Response:
        query = request.scope.get("query_string", b"")
        if len(query) > MAX_QUERY:
            return _error(414, f"the query is longer than {MAX_QUERY} bytes")
        if request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers:
            return _error(413, "requests carry no body; use GET with query fields")
        if query and request.url.path in (*STATIC, "/api/info"):
            return _error(422, f"{request.url.path} takes no query fields")
        return await call_next(request)

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

    def page(route: str) -> Any:
        body, media = assets[route]
        return lambda: Response(body, media_type=media, headers=HEADERS)

    for route in STATIC:
        app.add_api_route(route, page(route), methods=["GET"], include_in_schema=False)

    @app.get("/api/info")
    def info() -> JSONResponse:
        return JSONResponse(ex.info(), headers=HEADERS)

    @app.get("/api/sample")
    def sample(q: Annotated[Draw, Query()]) -> Response:
        z = ex.z(q)
        return _reply(q, png_grid(ex.render(z), grid_nrow(q.n)) if q.format == "png" else b"", {"z": z}, "grid")

    @app.get("/api/image")
    def image(q: Annotated[ImageQuery, Query()]) -> Response:
        z = ex.z(q)[q.index:q.index + 1]
        return _reply(q, png_image(ex.render(z)[0]) if q.format == "png" else b"",
                      {"index": q.index, "z": z[0]}, f"sample{q.index}")

    @app.get("/api/interpolate")
    def interpolate_(q: Annotated[InterpolateQuery, Query()]) -> Response:
        z_all = ex.z(q)
        z = interpolate(z_all[q.a], z_all[q.b], q.steps, q.mode)
        png = png_grid(ex.render(z), q.steps) if q.format == "png" else b""
        return _reply(q, png, {"a": q.a, "b": q.b, "mode": q.mode, "z": z}, f"{q.mode}-{q.a}-{q.b}")

    @app.get("/api/arithmetic")
    def arithmetic(q: Annotated[ArithmeticQuery, Query()]) -> Response:
        z_all = ex.z(q)
        means = torch.stack([concept_mean(z_all, g) for g in (q.a, q.b, q.c)])  # (3, nz)
        block = with_noise(means[0] - means[1] + means[2], 8, 0.25, q.seed)[[1, 2, 3, 4, 0, 5, 6, 7, 8]]
        png = b""
        if q.format == "png":
            images = ex.render(torch.cat([z_all[q.a + q.b + q.c], means, block]))
            sizes = [len(q.a), len(q.b), len(q.c)]
            cuts = [0, sizes[0], sizes[0] + sizes[1], sum(sizes)]
            groups = [images[cuts[i]:cuts[i + 1]] for i in range(3)]
            png = png_fig7(groups, images[cuts[3]:cuts[3] + 3], images[cuts[3] + 3:], [q.a, q.b, q.c])
        return _reply(q, png, {"a": q.a, "b": q.b, "c": q.c, "means": means, "result": block[4], "block": block},
                      "arithmetic")

    @app.get("/api/walk")
    def walk(q: Annotated[WalkQuery, Query()]) -> Response:
        z_all = ex.z(q)
        z = z_all[q.base] + q.strength * direction(z_all, q.b, q.a)  # Fig. 8: along B -> A
        png = png_image(ex.render(z[None])[0]) if q.format == "png" else b""
        return _reply(q, png, {"a": q.a, "b": q.b, "base": q.base, "strength": q.strength, "z": z},
                      f"walk{q.base}-s{q.strength:g}")

    return app


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


def serve(checkpoint: str, *, host: str = "127.0.0.1", port: int = 8000, device: str = "auto") -> None:
    """Run the explorer until Ctrl-C."""
    import uvicorn

    if not 0 <= port <= 65535:
        raise DCGANError(f"--port {port} is not a TCP port; use 1..65535 (0 picks a free one)")
    app = create_app(load_explorer(checkpoint, device))
    check_host(host)
    sock = listen(host, port)
    bound = sock.getsockname()[1]
    log.info("explorer of %s at http://%s:%d/ (Ctrl-C stops it)", checkpoint,
             f"[{host}]" if ":" in host else host, bound)
    config = uvicorn.Config(app, log_level="warning", limit_concurrency=64, timeout_keep_alive=5,
                            server_header=False)
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
