#!/usr/bin/env python3
"""Helpers for tests/it/sieve_e2e.rs, with clients we did not write: PyPI sievelib
(ManageSieve), smtplib (port 25) and imaplib (IMAP with STARTTLS).

Usage:
  sieve_e2e.py put HOST PORT USER PASSWORD NAME      (script on stdin; uploads and activates)
  sieve_e2e.py send HOST PORT FROM TO[,TO…]          (message on stdin; prints "sent",
                                                     or "refused CODE TEXT" for a DATA refusal)
  sieve_e2e.py fetch HOST PORT USER PASSWORD FOLDER  (one line per message: flags TAB subject)
  sieve_e2e.py change HOST PORT USER PASSWORD NAME   (lists the scripts, one name a line, then
                                                     tries PUTSCRIPT, SETACTIVE and DELETESCRIPT of
                                                     NAME: "ok" or "NO text" for each)

The test server's certificate is self-signed for another name, so verification is
switched off for these loopback connections.
"""

import imaplib
import re
import smtplib
import ssl
import sys

ssl.create_default_context = ssl._create_unverified_context
cmd, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

if cmd == "put":
    from sievelib import managesieve as sl

    sl.ssllib.create_default_context = ssl._create_unverified_context
    user, password, name = sys.argv[4], sys.argv[5], sys.argv[6]
    script = sys.stdin.read()
    c = sl.Client(host, port)
    assert c.connect(user, password, starttls=True, authmech="PLAIN"), c.errmsg
    assert c.putscript(name, script), c.errmsg
    assert c.setactive(name), c.errmsg
    active, _ = c.listscripts()
    assert active == name, active
    c.logout()
    print("ok")
elif cmd == "send":
    sender, rcpt = sys.argv[4], sys.argv[5]
    message = sys.stdin.buffer.read()
    s = smtplib.SMTP(host, port, timeout=30)
    s.ehlo("mail.remote.test")
    try:
        s.sendmail(sender, rcpt.split(","), message)
        print("sent")
    except smtplib.SMTPDataError as e:
        print("refused %d %s" % (e.smtp_code, e.smtp_error.decode()))
    s.quit()
elif cmd == "fetch":
    user, password, folder = sys.argv[4], sys.argv[5], sys.argv[6]
    m = imaplib.IMAP4(host, port, timeout=30)
    m.starttls(ssl_context=ssl._create_unverified_context())
    m.login(user, password)
    typ, data = m.select('"%s"' % folder, readonly=True)
    if typ != "OK":
        print("no such folder")
        sys.exit(0)
    typ, data = m.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])") if int(data[0]) else ("OK", [])
    for item in data:
        if isinstance(item, tuple):
            flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode()
            subject = item[1].decode().strip().removeprefix("Subject: ")
            print(f"{flags}\t{subject}")
    m.logout()
elif cmd == "change":
    from sievelib import managesieve as sl

    sl.ssllib.create_default_context = ssl._create_unverified_context
    user, password, name = sys.argv[4], sys.argv[5], sys.argv[6]
    c = sl.Client(host, port)
    assert c.connect(user, password, starttls=True, authmech="PLAIN"), c.errmsg
    active, others = c.listscripts()
    for script in ([active] if active else []) + others:
        print("script", script)
    for ok in (c.putscript(name, "keep;\r\n"), c.setactive(name), c.deletescript(name)):
        print("ok" if ok else "NO %s" % c.errmsg.decode())
    c.logout()
