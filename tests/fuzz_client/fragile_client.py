#!/usr/bin/env python3
"""A deliberately fragile BITS upload client, for testing bitsmock's client fuzzing.

Usage: fragile_client.py MODE FILE URL
  trust  believes BITS-Received-Content-Range blindly: an offset at or past the end of the
         file means "done", so a corrupt Ack makes it close early and report success;
  crash  aborts (SIGABRT) when BITS-Received-Content-Range is not a plain number;
  hang   waits forever when an answer's status is neither 200 nor 416.
Anything else it cannot handle ends it with exit 1 (a clean give-up).
"""
import http.client
import os
import signal
import sys
import time
import urllib.parse

PROTOCOL = "{7df0354d-249b-430f-820d-3d2a9bef4931}"


def post(url, packet, headers=None, body=b""):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    h = {"BITS-Packet-Type": packet, "Content-Length": str(len(body))}
    h.update(headers or {})
    conn.request("BITS_POST", u.path, body=body, headers=h)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def main():
    mode, path, url = sys.argv[1], sys.argv[2], sys.argv[3]
    data = open(path, "rb").read()
    size = len(data)
    try:
        r = post(url, "Create-Session", {"BITS-Supported-Protocols": PROTOCOL})
        session = r.getheader("BITS-Session-Id")
        if r.status != 200 or not session:
            sys.exit(1)
        offset = 0
        while offset < size:
            chunk = data[offset:offset + 8192]
            r = post(url, "Fragment", {
                "BITS-Session-Id": session,
                "Content-Range": "bytes %d-%d/%d" % (offset, offset + len(chunk) - 1, size),
            }, chunk)
            if r.status not in (200, 416):
                if mode == "hang":
                    while True:
                        time.sleep(3600)
                sys.exit(1)
            received = r.getheader("BITS-Received-Content-Range") or ""
            if mode == "crash" and not received.strip().isdigit():
                os.kill(os.getpid(), signal.SIGABRT)
            try:
                offset = int(received)
            except ValueError:
                sys.exit(1)
            if mode == "trust" and offset >= size:
                break
        r = post(url, "Close-Session", {"BITS-Session-Id": session})
        sys.exit(0 if r.status == 200 else 1)
    except (OSError, http.client.HTTPException):
        sys.exit(1)


if __name__ == "__main__":
    main()
