#!/usr/bin/env python3
"""Helpers for tests/it/tls_reports.rs, with clients we did not write: smtplib (submission
with STARTTLS and AUTH, and port 25), Python's email package and PyPI jsonschema
(reading and validating the SMTP TLS report a remote domain would receive).

Usage:
  tls_report.py submit PORT USER PASSWORD FROM TO...  (message on stdin; prints "sent")
  tls_report.py send PORT FROM TO                     (port 25; message on stdin; prints "sent")
  tls_report.py parse SCHEMA                          (a report message on stdin; prints JSON:
                                                       headers, attachment name and type, and
                                                       the report, validated against SCHEMA)
"""

import email
import email.policy
import gzip
import json
import smtplib
import ssl
import sys

cmd = sys.argv[1]
if cmd == "submit":
    port, user, password, sender, rcpts = int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.starttls(context=ctx)
    s.login(user, password)
    s.sendmail(sender, rcpts, sys.stdin.buffer.read())
    s.quit()
    print("sent")
elif cmd == "send":
    port, sender, rcpt = int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo("mx.remote.test")
    s.sendmail(sender, [rcpt], sys.stdin.buffer.read())
    s.quit()
    print("sent")
elif cmd == "parse":
    import jsonschema

    with open(sys.argv[2]) as f:
        schema = json.load(f)
    msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
    parts = [p for p in msg.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert len(parts) == 1, [p.get_content_type() for p in msg.walk()]
    part = parts[0]
    report = json.loads(gzip.decompress(part.get_content()))
    jsonschema.validate(report, schema, format_checker=jsonschema.FormatChecker())
    print(
        json.dumps(
            {
                "content_type": msg.get_content_type(),
                "report_type": msg.get_param("report-type"),
                "subject": str(msg["Subject"]),
                "from": str(msg["From"]),
                "tls_report_domain": str(msg["TLS-Report-Domain"]),
                "tls_report_submitter": str(msg["TLS-Report-Submitter"]),
                "filename": part.get_filename(),
                "report": report,
            }
        )
    )
else:
    sys.exit(f"unknown command {cmd}")
