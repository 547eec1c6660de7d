#!/usr/bin/env python3
"""A short scripted load for tests/it/monitoring.rs: real smtplib, imaplib and poplib
sessions that touch every family the dashboard charts.

usage: obs_load.py SMTP_PORT SUBMISSION_PORT IMAP_PORT POP3_PORT
The server has alice@example.com / wonderland and a self-signed certificate.
"""
import imaplib
import poplib
import smtplib
import ssl
import sys

smtp_port, submission_port, imap_port, pop3_port = (int(a) for a in sys.argv[1:5])
HOST = "127.0.0.1"
tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE

inbound = (
    b"From: bob@remote.test\r\nTo: alice@example.com\r\nSubject: metrics\r\n"
    b"Message-ID: <load-1@remote.test>\r\n\r\nHello.\r\n"
)
# The null sender: the test DNS answers NXDOMAIN, so any sender domain would be refused.
with smtplib.SMTP(HOST, smtp_port, local_hostname="client.remote.test") as s:
    s.starttls(context=tls)
    s.ehlo("client.remote.test")
    s.sendmail("", ["alice@example.com"], inbound)
    try:
        s.sendmail("", ["nobody@example.com"], inbound)
        raise SystemExit("RCPT to an unknown user was accepted")
    except smtplib.SMTPRecipientsRefused:
        pass

# Submission without AUTH: the transaction is refused at MAIL.
with smtplib.SMTP(HOST, submission_port, local_hostname="laptop") as s:
    s.starttls(context=tls)
    s.ehlo("laptop")
    code, _ = s.mail("alice@example.com")
    assert code == 530, code

outbound = (
    b"From: alice@example.com\r\nTo: carol@remote.invalid\r\nSubject: out\r\n"
    b"Message-ID: <load-2@example.com>\r\n\r\nBye.\r\n"
)
with smtplib.SMTP(HOST, submission_port, local_hostname="laptop") as s:
    s.starttls(context=tls)
    try:
        s.login("alice@example.com", "not the password")
        raise SystemExit("a wrong password logged in")
    except smtplib.SMTPAuthenticationError:
        pass
    s.login("alice@example.com", "wonderland")
    s.sendmail("alice@example.com", ["carol@remote.invalid"], outbound)

imap = imaplib.IMAP4(HOST, imap_port)
imap.starttls(ssl_context=tls)
imap.login("alice@example.com", "wonderland")
typ, _ = imap.select("INBOX")
assert typ == "OK", typ
typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER])")
assert typ == "OK", (typ, data)
typ, _ = imap.select('"No such folder"')
assert typ == "NO", typ
imap.logout()

pop = poplib.POP3(HOST, pop3_port)
pop.stls(context=tls)
pop.user("alice@example.com")
pop.pass_("wonderland")
count, _ = pop.stat()
assert count >= 1, count
pop.quit()
print("load done")
