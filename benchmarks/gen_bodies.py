#!/usr/bin/env python3
"""Writes N distinct, signed ~1 KB Jicoo webhook bodies for one load phase.

One request per line, tab-separated:  uid  Jicoo-Webhook-Signature  X-Signature  body
- Jicoo-Webhook-Signature: t=<now>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>  (Herald, aiohttp)
- X-Signature: sha256=<hex HMAC-SHA256(secret, body)>  (adnanh/webhook's payload-hmac-sha256 rule,
  which cannot read Jicoo's t=/v1= header; it gets the plain body HMAC instead)
Every body has its own booking uid (<tag><counter>), so Herald's dedupe never short-circuits a
request. Bodies are compact JSON without newlines and exactly --size bytes long.
Signatures use the current time: generate just before the phase (300 s tolerance).

With --wrk-threads N and --url-path, the requests are written whole for rotate.lua instead,
one file per wrk thread (<out>.<k>.http: request i goes to thread i % N), each an HTTP/1.1
message ended by a NUL byte, and no <out> itself (wrk reads only these). wrk runs each thread's Lua init on its main thread after starting
the threads before it, and starts its clock only after the last: an init that parsed and
formatted the lines itself took seconds, during which the first thread's connections were
already sending (see benchmarks/README.md, "Throughput").
"""
import argparse
import hashlib
import hmac
import json
import time

TEMPLATE = {
    "event": "guest_booked",
    "createdAt": "2026-11-20T01:15:43.000Z",
    "object": {
        "uid": "@UID@",
        "eventTypeUid": "et_consult60",
        "status": "open",
        "timeZone": "Asia/Tokyo",
        "createdAt": "2026-11-20T01:15:42.341Z",
        "updatedAt": "2026-11-20T01:15:42.341Z",
        "startedAt": "2026-11-27T05:00:00.000Z",
        "endedAt": "2026-11-27T06:00:00.000Z",
        "cancelReason": None,
        "cancelledAt": None,
        "cancelledBy": None,
        "contact": {"email": "taro.yamada@example.jp", "name": "山田 太郎"},
        "answers": [
            {"question": "ご相談内容", "content": ["料金プランについて"]},
            {"question": "How did you find out?", "content": ["SNS", "Friend"]},
        ],
        "tracking": {
            "utm_campaign": "winter_campaign",
            "utm_source": "twitter",
            "utm_medium": "owned_media",
            "utm_term": "howto",
            "utm_content": "@PAD@",
        },
    },
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--tag", required=True, help="uid prefix for this phase, e.g. bk_h1_")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--out", required=True)
    ap.add_argument("--wrk-threads", type=int, default=0, help="write <out>.<k>.http for k < N instead of <out>")
    ap.add_argument("--url-path", help="the request path in the .http files, e.g. /hooks/jicoo")
    a = ap.parse_args()
    if a.wrk_threads < 0 or (a.wrk_threads > 0) != (a.url_path is not None):
        ap.error("--wrk-threads N (N > 0) and --url-path go together")
    if a.url_path is not None and (not a.url_path.startswith("/") or any(c in a.url_path for c in " \r\n\0")):
        ap.error(f"--url-path must be a path starting with /: {a.url_path!r}")

    uid_width = len(a.tag) + 8
    skeleton = json.dumps(TEMPLATE, ensure_ascii=False, separators=(",", ":"))
    base = len(skeleton.replace("@UID@", "x" * uid_width).replace("@PAD@", "").encode())
    pad = "p" * max(0, a.size - base)
    head, tail = skeleton.replace("@PAD@", pad).split("@UID@")
    head_b, tail_b = head.encode(), tail.encode()
    key = a.secret.encode()
    t = str(int(time.time()))
    t_dot = (t + ".").encode()
    # Both MACs share the body prefix up to the uid: key the contexts once and copy them.
    jicoo_base = hmac.new(key, t_dot + head_b, hashlib.sha256)
    plain_base = hmac.new(key, head_b, hashlib.sha256)
    if a.wrk_threads:
        start = (f"POST {a.url_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Jicoo-Webhook-Signature: t=").encode() + t.encode() + b",v1="
    http = [open(f"{a.out}.{k}.http", "wb") for k in range(a.wrk_threads)]
    lines = None if http else open(a.out, "w", encoding="utf-8", newline="\n")
    for i in range(a.count):
        uid = f"{a.tag}{i:08d}"
        ub = uid.encode() + tail_b
        j = jicoo_base.copy(); j.update(ub)
        p = plain_base.copy(); p.update(ub)
        jsig, psig = j.hexdigest(), p.hexdigest()
        if lines:
            lines.write(f"{uid}\tt={t},v1={jsig}\tsha256={psig}\t{head}{uid}{tail}\n")
        else:
            http[i % a.wrk_threads].write(b"".join((
                start, jsig.encode(), b"\r\nX-Signature: sha256=", psig.encode(),
                b"\r\nContent-Length: ", str(len(head_b) + len(ub)).encode(), b"\r\n\r\n", head_b, ub, b"\0")))
    for f in http + ([lines] if lines else []):
        f.close()


if __name__ == "__main__":
    main()
