"""Parallel logins with Python's own clients (smtplib, imaplib, poplib) over implicit TLS,
each from its own loopback source address. argv: host, ports JSON {"smtp","imap","pop3"},
jobs JSON [[protocol, source, user, password], ...]. Prints one JSON line per job, in
order: [result, seconds, detail] with result ok | fail | refused | error."""
import imaplib, json, poplib, smtplib, socket, ssl, sys, threading, time

host, ports, jobs = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ctx = ssl._create_unverified_context()


class IMAP(imaplib.IMAP4_SSL):
    def __init__(self, source, *a, **kw):
        self.source = source
        super().__init__(*a, **kw)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class POP3(poplib.POP3_SSL):
    def __init__(self, source, *a, **kw):
        self.source = source
        super().__init__(*a, **kw)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def smtp(source, user, password):
    s = smtplib.SMTP_SSL(host, ports["smtp"], context=ctx, timeout=120, source_address=(source, 0))
    s.ehlo("probe.example")
    t0 = time.time()
    try:
        # One AUTH PLAIN, not login(): that tries the next mechanism after a 535.
        s.user, s.password = user, password
        s.auth("PLAIN", s.auth_plain, initial_response_ok=True)
        return "ok", t0, ""
    except smtplib.SMTPAuthenticationError as e:
        return ("fail" if e.smtp_code == 535 else "refused" if e.smtp_code == 454 else "error"), t0, str(e)
    finally:
        s.close()


def imap(source, user, password):
    s = IMAP(source, host, ports["imap"], ssl_context=ctx, timeout=120)
    t0 = time.time()
    try:
        s.login(user, password)
        return "ok", t0, ""
    except imaplib.IMAP4.error as e:
        text = str(e)
        return ("fail" if "AUTHENTICATIONFAILED" in text else "refused" if "UNAVAILABLE" in text else "error"), t0, text
    finally:
        try:
            s.shutdown()
        except OSError:
            pass


def pop3(source, user, password):
    s = POP3(source, host, ports["pop3"], context=ctx, timeout=120)
    t0 = time.time()
    try:
        s.user(user)
        s.pass_(password)
        return "ok", t0, ""
    except poplib.error_proto as e:
        text = str(e)
        return ("fail" if "[AUTH]" in text else "refused" if "SYS/TEMP" in text else "error"), t0, text
    finally:
        s.close()


results = [None] * len(jobs)


def run(i, job):
    proto, source, user, password = job
    try:
        result, t0, detail = {"smtp": smtp, "imap": imap, "pop3": pop3}[proto](source, user, password)
        results[i] = [result, time.time() - t0, detail]
    except Exception as e:  # connection trouble: reported, the test decides
        results[i] = ["error", 0.0, repr(e)]


threads = [threading.Thread(target=run, args=(i, j)) for i, j in enumerate(jobs)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for r in results:
    print(json.dumps(r))
