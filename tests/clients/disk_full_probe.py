"""Send one message with smtplib, or APPEND one with imaplib, and print what the server
answered as one line: `250` / `OK` when it was taken, else `<code> <text>` (SMTP, the
reply to whichever command refused it) or `NO <text>` (IMAP, with its response code).

usage: disk_full_probe.py smtp PORT RCPT SIZE SUBJECT
       disk_full_probe.py imap PORT USER PASSWORD SIZE SUBJECT"""
import imaplib
import smtplib
import ssl
import sys


def message(size, subject):
    head = f"From: probe@remote.test\r\nTo: someone\r\nSubject: {subject}\r\nMessage-ID: <{subject}@probe>\r\n\r\n"
    line = "x" * 76 + "\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return (head + body).encode()


mode = sys.argv[1]
if mode == "smtp":
    port, rcpt, size, subject = int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as s:
        s.ehlo("probe.remote.test")
        try:
            # The null sender: port 25 checks nothing about it in DNS.
            s.sendmail("", [rcpt], message(size, subject))
            print("250")
        except smtplib.SMTPSenderRefused as e:
            print(e.smtp_code, e.smtp_error.decode())
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()))
            print(code, text.decode())
        except smtplib.SMTPDataError as e:
            print(e.smtp_code, e.smtp_error.decode())
elif mode == "imap":
    port, user, password, size, subject = int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=120)
    imap.starttls(ssl_context=ctx)
    imap.login(user, password)
    try:
        typ, data = imap.append("INBOX", None, None, message(size, subject))
        print(typ, data[0].decode() if data and data[0] else "")
    except imaplib.IMAP4.error as e:
        print("NO", str(e))
    imap.logout()
else:
    sys.exit(f"unknown mode {mode}")
