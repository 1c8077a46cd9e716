#!/usr/bin/env python3
"""A test harness in Python (standard library only) driving bitsmock over its control API.

It starts `bitsmock serve --json --admin 127.0.0.1:0`, arms "lose the next Close-Session
Ack", runs a BITS client (here bitsmock's reference client, `bitsmock upload`; put yours in
its place), and asserts on the server's journal: the first Close-Session was applied (the
file committed) but its Ack lost; the client's retried Close found no session
(0x8020001F), so it uploaded again in a new session and closed that one. The server allows
overwrites, as a real server must for that recovery to work.

    python3 examples/python_harness.py [path/to/bitsmock]

The test suite runs it (tests/examples.rs). Exit status 0 means every assertion held.
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.request


def call(admin, method, path, body=None):
    """One control API request; returns the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(admin + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        text = answer.read().decode()
    return json.loads(text) if text else None


def main():
    bitsmock = sys.argv[1] if len(sys.argv) > 1 else "bitsmock"
    work = tempfile.mkdtemp(prefix="bitsmock-harness-")
    server = subprocess.Popen(
        [bitsmock, "serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
         "--dir", os.path.join(work, "uploads"), "--json", "--seed", "1",
         "--allow-overwrites"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        # The first stdout line says where everything is.
        ready = json.loads(server.stdout.readline())
        url, admin = ready["url"].rstrip("/"), ready["admin_url"].rstrip("/")
        assert call(admin, "GET", "/health")["ok"] is True

        # Arm: the next Close-Session is applied (the file is committed), its Ack lost.
        armed = call(admin, "POST", "/rules",
                     {"rule": "packet=close-session fault=lose-ack how=close", "times": 1})
        assert "id" in armed, armed

        source = os.path.join(work, "report.bin")
        with open(source, "wb") as f:
            f.write(os.urandom(300_000))
        client = subprocess.run(
            [bitsmock, "upload", source, url + "/drop/report.bin", "--json",
             "--fragment-size", "100KiB", "--retry-base", "10ms"],
            capture_output=True, text=True, timeout=120)
        result = json.loads(client.stdout.splitlines()[-1])
        assert client.returncode == 0, client.stderr

        # What the server saw, from its journal: the lost Ack, the retry, the second session.
        closes = call(admin, "GET", "/journal?packet=close-session")["events"]
        sent = [(e["sent"]["sent"], e["sent"].get("status")) for e in closes]
        assert sent == [("closed", None), ("status", 500), ("status", 200)], sent
        assert closes[1]["reason"].startswith("BG_E_SESSION_NOT_FOUND"), closes[1]
        assert closes[0]["session"]["ordinal"] == 1 and closes[2]["session"]["ordinal"] == 2
        uploads = call(admin, "GET", "/uploads")
        assert [u["path"] for u in uploads] == ["drop/report.bin"], uploads
        with open(source, "rb") as f:
            import hashlib
            assert uploads[0]["sha256"] == hashlib.sha256(f.read()).hexdigest()
        rules = call(admin, "GET", "/rules")
        assert rules[0]["fired"] == 1, rules
        # The verdict on the client: no rule broken (its 10 ms retry base is on purpose here,
        # so the backoff floor is lowered to match).
        verdict = call(admin, "GET", "/verdict?backoff-floor=1ms")
        failed = [c for c in verdict["checks"] if c["status"] == "fail"]
        assert verdict["passed"], failed
        print(f"ok: Close-Session Ack lost once; the client recovered in a second session; "
              f"{uploads[0]['size']} bytes committed ({result.get('requests')} requests)")
    finally:
        try:
            call(admin, "POST", "/shutdown")
        except Exception:  # the server may already be gone; make sure it is
            server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
