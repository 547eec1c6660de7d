#!/usr/bin/env python3
"""Helpers for tests/it/dmarc_reports.rs, with clients we did not write: smtplib (port 25)
and PyPI parsedmarc (reading the aggregate report a remote domain would receive).

Usage:
  dmarc_report.py send HOST PORT FROM TO    (message on stdin; prints "sent")
  dmarc_report.py parse                     (a report message on stdin; prints JSON:
                                             subject, attachment name and type, and
                                             parsedmarc's reading of the gzipped XML)
"""

import email
import email.policy
import json
import smtplib
import sys

cmd = sys.argv[1]
if cmd == "send":
    host, port, sender, rcpt = sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    s = smtplib.SMTP(host, port, timeout=30)
    s.ehlo("mail.remote.test")
    s.sendmail(sender, [rcpt], sys.stdin.buffer.read())
    s.quit()
    print("sent")
elif cmd == "parse":
    import parsedmarc

    msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
    parts = [p for p in msg.iter_attachments()]
    assert len(parts) == 1, parts
    part = parts[0]
    report = parsedmarc.parse_aggregate_report_file(part.get_content(), offline=True)
    records = [
        {
            "source_ip": r["source"]["ip_address"],
            "count": r["count"],
            "disposition": r["policy_evaluated"]["disposition"],
            "dkim": r["policy_evaluated"]["dkim"],
            "spf": r["policy_evaluated"]["spf"],
            "header_from": r["identifiers"]["header_from"],
            "spf_domain": [s["domain"] for s in r["auth_results"]["spf"]],
        }
        for r in report["records"]
    ]
    print(
        json.dumps(
            {
                "subject": str(msg["Subject"]),
                "from": str(msg["From"]),
                "filename": part.get_filename(),
                "content_type": part.get_content_type(),
                "org_name": report["report_metadata"]["org_name"],
                "domain": report["policy_published"]["domain"],
                "p": report["policy_published"]["p"],
                "records": sorted(records, key=lambda r: -r["count"]),
            }
        )
    )
else:
    sys.exit("unknown command " + cmd)
