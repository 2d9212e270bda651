#!/usr/bin/env python3
"""The baseline: a minimal aiohttp receiver doing what Herald does before its 202.

POST /hooks/jicoo:
- verifies `Jicoo-Webhook-Signature: t=<unix>,v1=<hex>` with Herald's rules: HMAC-SHA256 of
  "<t>.<raw body>", spaces after commas allowed, any of several v1 values may match, hex of
  either case, |now - t| <= 300 s, constant-time comparison (hmac.compare_digest); 401 otherwise;
- checks that the body is a JSON object (400 otherwise), as Herald's decoder does;
- appends the body as one line to --out with a single os.write on an O_APPEND descriptor
  (no fsync: the line is in the page cache when 202 is sent), then answers 202.
One process, the default asyncio event loop, no access log.
"""
import argparse
import hashlib
import hmac
import json
import os
import time

from aiohttp import web

TOLERANCE = 300
HEX = set("0123456789abcdefABCDEF")


def verify(header: str | None, body: bytes, secrets: list[bytes], now: int) -> str | None:
    """None when valid, else the reason Herald would give."""
    if header is None:
        return "missing_header"
    timestamp, candidates = None, []
    for element in header.split(","):
        item = element.lstrip(" \t")
        if "=" not in item:
            continue
        key, value = item.split("=", 1)
        value = value.rstrip(" \t")
        if key == "t":
            timestamp = value
        elif key == "v1":
            candidates.append(value)
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or not candidates:
        return "malformed_header"
    if len(timestamp) > 18 or abs(now - int(timestamp)) > TOLERANCE:
        return "timestamp_outside_tolerance"
    signatures = [bytes.fromhex(c) for c in candidates if len(c) == 64 and set(c) <= HEX]
    if not signatures:
        return "signature_mismatch"
    message = timestamp.encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        if any(hmac.compare_digest(expected, s) for s in signatures):
            return None
    return "signature_mismatch"


def make_app(secrets: list[bytes], out_path: str) -> web.Application:
    fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        reason = verify(request.headers.get("Jicoo-Webhook-Signature"), body, secrets, int(time.time()))
        if reason:
            return web.json_response({"error": reason}, status=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": "malformed_body"}, status=400)
        if not isinstance(payload, dict):
            return web.json_response({"error": "malformed_body"}, status=400)
        line = body if b"\n" not in body else json.dumps(payload, ensure_ascii=False).encode()
        os.write(fd, line + b"\n")
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application(client_max_size=1 << 20)
    app.router.add_post("/hooks/jicoo", hook)
    app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", action="append", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    web.run_app(make_app([s.encode() for s in a.secret], a.out), host=a.host, port=a.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
