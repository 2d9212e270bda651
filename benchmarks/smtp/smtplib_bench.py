#!/usr/bin/python3
"""Sends N messages over one SMTP session with Python's smtplib: the baseline for Herald.

The message is built once with the email package (Japanese subject and body, like the
Swift benchmark's), then sent N times with sendmail(), which is MAIL/RCPT/DATA per message.
Prints "smtplib <messages per second>".
"""
import sys
import time
import smtplib
from email.message import EmailMessage

port, count = int(sys.argv[1]), int(sys.argv[2])
msg = EmailMessage()
msg["From"] = "Herald 通知 <bot@example.com>"
msg["To"] = "Ops Team <ops@example.com>, \"Sato, Hanako\" <hanako@example.com>"
msg["Subject"] = "新しい予約: 山田 太郎 様 — 料金プランについてのご相談 (11月27日 14:00〜15:00 JST)"
msg.set_content("山田 太郎 様から予約がありました。\n.hidden line starting with a dot\n.\n..\nEnd = fin  \n")
data = msg.as_bytes()
recipients = ["ops@example.com", "hanako@example.com"]

with smtplib.SMTP("127.0.0.1", port) as smtp:
    smtp.ehlo("herald.test")
    smtp.sendmail("bot@example.com", recipients, data)
    start = time.perf_counter()
    for _ in range(count):
        smtp.sendmail("bot@example.com", recipients, data)
    elapsed = time.perf_counter() - start
print(f"smtplib {int(count / elapsed)}")
