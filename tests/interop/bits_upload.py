#!/usr/bin/env python3
"""An independent BITS upload client, written from docs/protocol.md with Python's http.client.

It shares no code with bitsmock (a different language and HTTP stack), so the server is
checked against a second reading of the spec.
Usage: bits_upload.py [--bits-py] [--ca FILE] FILE URL [FRAGMENT_SIZE]
--bits-py speaks the dialect of the XenServer Transfer VM's bits.py: bodyless packets (Ping,
Create-Session, Close-Session) carry no Content-Length at all. IIS answers those with 411.
An https:// URL is uploaded with Python's ssl module, trusting only the CA in --ca FILE; a
certificate it refuses ends the run with "certificate refused: <OpenSSL's reason>".
Prints the session id; exits non-zero with a message on any protocol violation.
"""
import http.client
import os
import ssl
import sys
import urllib.parse

PROTOCOL = "{7df0354d-249b-430f-820d-3d2a9bef4931}"
# Set by --bits-py: leave Content-Length out of bodyless packets.
OMIT_EMPTY_LENGTH = False


def fail(msg):
    print("bits_upload.py: " + msg, file=sys.stderr)
    sys.exit(1)


def post(conn, path, packet, headers=None, body=b""):
    h = {"BITS-Packet-Type": packet,
         "User-Agent": "Microsoft BITS/7.8 (interop test)", "Connection": "Keep-Alive"}
    if body or not OMIT_EMPTY_LENGTH:
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    # With no body and no Content-Length header, http.client adds none for BITS_POST.
    conn.request("BITS_POST", path, body=body or None, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    if resp.getheader("BITS-Packet-Type", "").lower() != "ack":
        fail("%s answer is not an Ack: %r" % (packet, resp.getheaders()))
    if resp.getheader("Content-Length") != "0" or data:
        fail("%s Ack must have Content-Length: 0" % packet)
    return resp


def main():
    global OMIT_EMPTY_LENGTH
    args = sys.argv[1:]
    ca = None
    while args and args[0].startswith("--"):
        if args[0] == "--bits-py":
            OMIT_EMPTY_LENGTH = True
            args = args[1:]
        elif args[0] == "--ca":
            ca, args = args[1], args[2:]
        else:
            fail("unknown flag " + args[0])
    path_in, url = args[0], args[1]
    fragment = int(args[2]) if len(args) > 2 else 1 << 20
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        context = ssl.create_default_context(cafile=ca)
        conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=30,
                                           context=context)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
    size = os.path.getsize(path_in)

    try:
        r = post(conn, u.path, "Ping")
    except ssl.SSLCertVerificationError as e:
        fail("certificate refused: %s" % e.verify_message)
    if r.status != 200:
        fail("Ping answered %d" % r.status)

    r = post(conn, u.path, "Create-Session", {"BITS-Supported-Protocols": PROTOCOL})
    if r.status != 200 or r.getheader("BITS-Protocol", "").lower() != PROTOCOL:
        fail("Create-Session failed: %d %r" % (r.status, r.getheaders()))
    if r.getheader("Accept-Encoding") != "identity":
        fail("Create-Session Ack lacks Accept-Encoding: identity")
    session = r.getheader("BITS-Session-Id")
    if not session or not (session.startswith("{") and session.endswith("}")):
        fail("no braced session id: %r" % session)

    offset = 0
    with open(path_in, "rb") as f:
        while offset < size:
            f.seek(offset)
            chunk = f.read(min(fragment, size - offset))
            last = offset + len(chunk) - 1
            r = post(conn, u.path, "Fragment", {
                "BITS-Session-Id": session,
                "Content-Name": os.path.basename(path_in),
                "Content-Range": "bytes %d-%d/%d" % (offset, last, size),
            }, chunk)
            if r.status not in (200, 416):
                fail("Fragment at %d answered %d %r" % (offset, r.status, r.getheaders()))
            received = r.getheader("BITS-Received-Content-Range")
            if received is None or not received.isdigit():
                fail("Fragment Ack without a numeric BITS-Received-Content-Range")
            if r.getheader("BITS-Error-Code"):
                fail("success Ack carries an error code")
            offset = int(received)
            if offset > last + 1:
                fail("server acknowledged bytes it was never sent")

    if size == 0:
        pass
    r = post(conn, u.path, "Close-Session", {"BITS-Session-Id": session})
    if r.status != 200:
        fail("Close-Session answered %d" % r.status)
    print(session)


if __name__ == "__main__":
    main()
