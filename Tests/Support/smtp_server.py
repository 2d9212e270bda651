#!/usr/bin/python3
"""A real SMTP server (aiosmtpd) for EmailNotifier's tests and benchmark.

Listens on 127.0.0.1 on a free port and prints "PORT <n>" on stdout once ready. Every
message it accepts is appended to --out as one JSON line: the envelope, the raw message
(base64) and what Python's email package makes of it (decoded headers and parts), so the
tests check the Swift encoder against an independent decoder.

Needs Debian's python3-aiosmtpd; run with /usr/bin/python3.
"""
import argparse
import asyncio
import base64
import email
import email.policy
import json
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["plain", "starttls", "tls"], default="plain")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth", help="user:password that AUTH must present")
    p.add_argument("--auth-exclude", action="append", default=[], help="hide a mechanism, e.g. PLAIN")
    p.add_argument("--reject", action="append", default=[], help="answer 550 to RCPT TO this address")
    p.add_argument("--tempfail", action="append", default=[], help="answer 450 to RCPT TO this address")
    p.add_argument("--drop-data", action="store_true", help="close the connection right after 354")
    p.add_argument("--stale-rset", action="store_true", help="answer RSET with 421 and close")
    p.add_argument("--out", help="JSON lines file of received messages (omit to discard them)")
    p.add_argument("--port", type=int, default=0, help="listen on this port (default: a free one)")
    return p.parse_args()


def describe(data: bytes) -> dict:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    headers = {}
    for name, value in msg.items():
        headers.setdefault(name.lower(), []).append(str(value))
    parts = []
    for part in msg.walk():
        entry = {
            "type": part.get_content_type(),
            "params": {k: v for k, v in part.get_params() or [] if v},
            "disposition": part.get_content_disposition(),
            "encoding": part.get("Content-Transfer-Encoding"),
        }
        if not part.is_multipart():
            content = part.get_content()
            entry["content"] = content if isinstance(content, str) else content.decode("utf-8")
        parts.append(entry)
    return {"headers": headers, "parts": parts, "defects": [str(d) for d in msg.defects]}


class Handler:
    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a", encoding="utf-8") if args.out else None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.args.reject:
            return f"550 5.1.1 <{address}>: user unknown"
        if address in self.args.tempfail:
            return f"450 4.2.1 <{address}>: mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.out:
            data = envelope.original_content
            record = {
                "mail_from": envelope.mail_from,
                "mail_options": envelope.mail_options,
                "peer_port": session.peer[1],
                "rcpt_tos": envelope.rcpt_tos,
                "raw": base64.b64encode(data).decode("ascii"),
                "parsed": describe(data),
            }
            self.out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.out.flush()
        return "250 2.0.0 OK: queued"


class TestSMTP(SMTP):
    """aiosmtpd's SMTP with the faults the tests need."""

    fault_args = None

    async def smtp_DATA(self, arg):
        if self.fault_args.drop_data and self.envelope.rcpt_tos:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            self.transport.close()
            return
        await super().smtp_DATA(arg)

    async def smtp_QUIT(self, arg):
        # Recorded so the tests can check that connections are closed politely.
        if self.fault_args.out:
            with open(self.fault_args.out + ".quit", "a", encoding="utf-8") as f:
                f.write(f"{self.session.peer[1]}\n")
        await super().smtp_QUIT(arg)

    async def smtp_RSET(self, arg):
        if self.fault_args.stale_rset:
            await self.push("421 4.4.2 closing idle connection")
            self.transport.close()
            return
        await super().smtp_RSET(arg)


def make_authenticator(credentials):
    user, _, password = credentials.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == user and auth_data.password.decode() == password)
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main():
    args = parse_args()
    TestSMTP.fault_args = args
    handler = Handler(args)
    context = None
    if args.mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    options = dict(
        enable_SMTPUTF8=True,
        ident="herald-test-smtpd",
        hostname="smtp.test",
        authenticator=make_authenticator(args.auth) if args.auth else None,
        auth_required=bool(args.auth),
        # STARTTLS mode really checks that AUTH comes after TLS; implicit TLS is TLS anyway.
        auth_require_tls=args.mode == "starttls",
        auth_exclude_mechanism=args.auth_exclude,
    )
    if args.mode == "starttls":
        options.update(tls_context=context, require_starttls=True)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: TestSMTP(handler, **options), "127.0.0.1", args.port,
        ssl=context if args.mode == "tls" else None)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    # Exit when the parent closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
