"""What every request to ``imgsim serve`` passes before it reaches an endpoint, and the headers
every answer carries.

- The token (``IMGSIM_API_TOKEN``): ``Authorization: Bearer TOKEN`` (the scheme in any case, as
  HTTP has it; a bare token is refused), or the cookie a page opened with ``?token=`` keeps.
- The Host header: a server on a loopback address answers only to its loopback names (and
  ``IMGSIM_ALLOWED_HOSTS``), so a web page cannot reach it through a DNS name that resolves
  to 127.0.0.1 (DNS rebinding); elsewhere, the names in ``IMGSIM_ALLOWED_HOSTS`` when set.
- NUL bytes in the path or the query are refused (400): no such text reaches the database.
- A JSON body is refused past ``MAX_JSON_BYTES`` (413); uploads have their own limit.
- Answers carry ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and a content
  security policy that allows the server's own scripts, styles and images only.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MAX_JSON_BYTES = 1 << 20
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
OPEN_PATHS = ("/api/health",)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; "
                               "script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "Referrer-Policy": "no-referrer",
}


TOKEN_FILE = "api-token"


def kept_token(home: Path) -> tuple[str, bool]:
    """The token kept in ``home`` (made on the first start, readable by its owner only) and
    whether this call made it: a server that must have a token and was given none."""
    path = home / TOKEN_FILE
    if not path.is_file():
        home.mkdir(parents=True, exist_ok=True)
        token = secrets.token_urlsafe(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another start made it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
            return token, True
    return path.read_text().strip(), False


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def bearer(header: str) -> str:
    """The token of an ``Authorization`` header with the Bearer scheme (any case), else ''."""
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def host_name(header: str) -> str:
    """The host of a Host header, without its port (an IPv6 address keeps its brackets)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def install(app: FastAPI, token: str | None, allowed_hosts: Sequence[str] | None) -> None:
    """Add the guards to ``app``; ``allowed_hosts`` None: any Host header."""
    hosts = None if allowed_hosts is None else {h.strip().lower() for h in allowed_hosts if h.strip()}

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        refused = _refusal(request, token, hosts)
        response = refused or await call_next(request)
        if not refused and token and request.query_params.get("token") == token:  # a page opened with ?token=
            response.set_cookie("imgsim_token", token, httponly=True, samesite="strict")
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _refusal(request: Request, token: str | None, hosts: set[str] | None) -> JSONResponse | None:
    if hosts is not None and host_name(request.headers.get("host", "")) not in hosts:
        return error(400, "this server does not answer to that Host (IMGSIM_ALLOWED_HOSTS)")
    if "\x00" in request.url.path or "%00" in request.url.query or "\x00" in request.url.query:
        return error(400, "a NUL byte in the request")
    if token and request.url.path not in OPEN_PATHS:
        given = bearer(request.headers.get("authorization", "")) or request.cookies.get("imgsim_token", "") \
            or request.query_params.get("token", "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            return error(401, "a valid token is required (Authorization: Bearer TOKEN)")
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        length = request.headers.get("content-length")
        if length is None and request.method in ("POST", "PUT", "PATCH"):
            return error(411, "a JSON body needs a Content-Length")
        if length is not None and (not length.isdigit() or int(length) > MAX_JSON_BYTES):
            return error(413, f"JSON body too large: more than {MAX_JSON_BYTES} bytes")
    return None
