"""Before login, over implicit TLS (port 993): a synchronizing literal past the bound gets
a tagged BAD without '+', a LITERAL+ one gets BYE and the connection closes.

usage: imap_preauth_literal.py IMAPS_PORT
Exits 0 when the server answered so."""
import socket
import ssl
import sys

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the server's self-signed certificate

with ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)) as s:
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK"), "greeting"
    s.sendall(b"a XYZZY {26000000}\r\n")
    line = f.readline()
    assert line == b"a BAD Literal too big\r\n", line
    # no data after the announcement: unread data would turn the close into a reset
    s.sendall(b"b LOGIN {26000000+}\r\n")
    line = f.readline()
    assert line == b"* BYE Literal too big\r\n", line
    assert f.readline() == b"", "closed after BYE"
