"""An independent signer and verifier for the gateway's tests.

sign SECRET TS BODYFILE          -> prints v0=... computed with Python's hmac
verify SECRET TS BODYFILE SIG    -> prints True/False from slack_sdk's SignatureVerifier
"""
import hashlib
import hmac
import sys
import time


def main():
    command, secret, ts, path = sys.argv[1:5]
    body = open(path, "rb").read()
    if command == "sign":
        base = b"v0:" + ts.encode() + b":" + body
        print("v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest())
    elif command == "verify":
        from slack_sdk.signature import SignatureVerifier

        # slack_sdk reads the body as text; Slack's bodies are UTF-8.
        verifier = SignatureVerifier(secret, clock=_Clock(int(ts)))
        print(verifier.is_valid(body, ts, sys.argv[5]))
    else:
        raise SystemExit("unknown command " + command)


class _Clock:
    def __init__(self, now):
        self._now = now

    def now(self):
        return float(self._now)


if __name__ == "__main__":
    main()
