"""A smarthost for tests/it/smarthost.rs: aiosmtpd (a server we did not write) on a loopback
port, in one of three modes:

  smtps     implicit TLS from the first byte (port 465 style), AUTH required
  starttls  STARTTLS required before anything else, then AUTH required
  plain     no TLS, no AUTH (a relay inside a private network)

Every AUTH attempt and every message is appended to --out as one JSON line, with whether
the connection was encrypted at that moment, so the test can check that credentials
only ever travelled inside TLS. Prints `ready` once the port accepts connections.
"""

import argparse
import json
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--mode", choices=["smtps", "starttls", "plain"], required=True)
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--user", default="")
parser.add_argument("--password", default="")
args = parser.parse_args()

lock = threading.Lock()


def record(event):
    with lock, open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


def encrypted(server):
    # Implicit TLS and STARTTLS both leave an SSL object on the current transport.
    return server.transport is not None and server.transport.get_extra_info("ssl_object") is not None


def authenticator(server, session, envelope, mechanism, auth_data):
    tls = encrypted(server)
    ok = (
        isinstance(auth_data, LoginPassword)
        and tls
        and auth_data.login.decode() == args.user
        and auth_data.password.decode() == args.password
    )
    login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
    record({"event": "auth", "mechanism": mechanism, "tls": tls, "login": login, "ok": ok})
    return AuthResult(success=ok, auth_data=auth_data)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        record(
            {
                "event": "data",
                "tls": encrypted(server),
                "login": session.login_data.decode() if session.authenticated and session.login_data else None,
                "mail_from": envelope.mail_from,
                "rcpts": envelope.rcpt_tos,
                "data": envelope.original_content.decode("utf-8", "replace"),
            }
        )
        return "250 2.0.0 queued"


kwargs = {}
if args.mode != "plain":
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    kwargs.update(authenticator=authenticator, auth_required=True)
    if args.mode == "smtps":
        # aiosmtpd only counts STARTTLS as TLS for its own auth_require_tls check;
        # the authenticator above refuses a clear connection instead.
        kwargs.update(ssl_context=context, auth_require_tls=False)
    else:
        kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)

controller = Controller(Handler(), hostname="127.0.0.1", port=args.port, **kwargs)
controller.start()
print("ready", flush=True)
threading.Event().wait()
