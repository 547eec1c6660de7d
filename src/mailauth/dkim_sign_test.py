# Test helper: sign messages with python's dkim (dkimpy), an implementation nobody
# here wrote. stdin: {"domain": d, "selector": s, "messages": [text, ...]}.
# stdout: {"public": base64 Ed25519 public key, "signed": [text, ...]}.
import base64, json, sys
import dkim
import nacl.signing

req = json.load(sys.stdin)
key = nacl.signing.SigningKey.generate()
seed = base64.b64encode(bytes(key))
public = base64.b64encode(bytes(key.verify_key)).decode()
signed = []
for msg in req["messages"]:
    raw = msg.encode()
    sig = dkim.sign(raw, req["selector"].encode(), req["domain"].encode(), seed,
                    signature_algorithm=b"ed25519-sha256",
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    signed.append((sig + raw).decode())
print(json.dumps({"public": public, "signed": signed}))
