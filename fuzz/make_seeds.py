#!/usr/bin/env python3
"""Writes fuzz/seeds/<target>/ from the protocol's worked examples and profiles/*.toml.

Run from anywhere: `python3 fuzz/make_seeds.py`. Seeds are committed; rerun this only to
change them. The session ids in the `connection` seeds are the ones a server with seed 0
issues, in order (one id is drawn per valid BITS packet the server processes), so a seed
whose first packet is a Create-Session uses ID[0], and so on.
"""

import json
import random
import shutil
import tomllib
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"
GUID = "{7df0354d-249b-430f-820d-3d2a9bef4931}"
SID = "{6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}"
# Ids a seed-0 server draws, in order (bitsmock::server, StdRng seeded 0 ^ 0x5E551011D5EED000).
ID = [
    "{4CF134BA-2164-4CFC-84C3-20B358695DB7}",
    "{2B004D9C-186C-4AB0-8C3F-3FEFE83F943B}",
    "{AF021ED9-68E2-4A8C-A35A-5999D7345053}",
    "{5E4CF9D5-CB78-4861-8566-49E76D6AE07A}",
    "{ACC286B1-D6D7-44DF-A0E5-9A9CCBE3BE73}",
    "{32EFC2D7-3A2A-4771-A4DB-B27C2C50FDE6}",
]


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def head(method, target, headers):
    lines = [f"{method} {target} HTTP/1.1"] + [f"{n}: {v}" for n, v in headers]
    return "\r\n".join(lines) + "\r\n\r\n"


def request(target, packet_type, extra=(), body=b"", method="BITS_POST"):
    headers = [("Host", "upload.test"), ("BITS-Packet-Type", packet_type)]
    headers += list(extra)
    if not any(n.lower() == "content-length" for n, _ in headers):
        headers.append(("Content-Length", str(len(body))))
    return head(method, target, headers).encode() + body


def ping(t="/drop/report.bin"):
    return request(t, "Ping")


def create(t="/drop/report.bin", extra=()):
    return request(t, "Create-Session", [("BITS-Supported-Protocols", GUID), *extra])


def data(first, last):
    return bytes((i * 31) % 251 for i in range(first, last + 1))


def fragment(sid, first, last, total, t="/drop/report.bin", extra=()):
    return request(
        t,
        "Fragment",
        [("BITS-Session-Id", sid), ("Content-Name", "report.bin"),
         ("Content-Range", f"bytes {first}-{last}/{total}"), *extra],
        data(first, last),
    )


def close(sid, t="/drop/report.bin"):
    return request(t, "Close-Session", [("BITS-Session-Id", sid)])


def cancel(sid, t="/drop/report.bin"):
    return request(t, "Cancel-Session", [("BITS-Session-Id", sid)])


def packet_seeds():
    t = "/drop/report.bin"
    seeds = {
        "ping": ("BITS_POST", t, [("Host", "upload.test"), ("BITS-Packet-Type", "Ping"), ("Content-Length", "0")]),
        "create": ("BITS_POST", t, [("BITS-Packet-Type", "Create-Session"), ("BITS-Supported-Protocols", GUID), ("Content-Length", "0")]),
        "create-many-guids": ("BITS_POST", t, [("BITS-Packet-Type", "CREATE-SESSION"), ("BITS-Supported-Protocols", "{00000000-0000-0000-0000-000000000000}, " + GUID.upper()), ("Content-Name", "report.bin"), ("Content-Length", "0")]),
        "fragment-first": ("BITS_POST", t, [("BITS-Packet-Type", "Fragment"), ("BITS-Session-Id", SID), ("Content-Name", "report.bin"), ("Content-Range", "bytes 0-65535/150000"), ("Content-Length", "65536")]),
        "fragment-last": ("BITS_POST", t, [("BITS-Packet-Type", "fragment"), ("BITS-Session-Id", SID), ("Content-Range", "bytes 65536-149999/150000"), ("Content-Length", "84464")]),
        "fragment-identity": ("BITS_POST", t, [("BITS-Packet-Type", "Fragment"), ("BITS-Session-Id", SID.lower()), ("Content-Range", "Bytes 0-0/1"), ("Content-Encoding", "identity"), ("Content-Length", "1")]),
        "fragment-gzip": ("BITS_POST", t, [("BITS-Packet-Type", "Fragment"), ("BITS-Session-Id", SID), ("Content-Range", "bytes 0-9/10"), ("Content-Encoding", "gzip"), ("Content-Length", "10")]),
        "fragment-mismatch": ("BITS_POST", t, [("BITS-Packet-Type", "Fragment"), ("BITS-Session-Id", SID), ("Content-Range", "bytes 65536-99999/100000"), ("Content-Length", "1")]),
        "close": ("BITS_POST", t, [("BITS-Packet-Type", "Close-Session"), ("BITS-Session-Id", SID), ("Content-Name", "report.bin"), ("Content-Length", "0")]),
        "cancel": ("BITS_POST", t, [("BITS-Packet-Type", "Cancel-Session"), ("BITS-Session-Id", "{C3}"), ("Content-Length", "0")]),
        "no-length": ("BITS_POST", t, [("BITS-Packet-Type", "Ping")]),
        "absolute-target": ("BITS_POST", "http://farm.test/orders/in.xml", [("BITS-Packet-Type", "Create-Session"), ("BITS-Supported-Protocols", GUID), ("Content-Length", "0")]),
        "traversal": ("BITS_POST", "/drop/%2e%2e/etc/passwd", [("BITS-Packet-Type", "Create-Session"), ("BITS-Supported-Protocols", GUID), ("Content-Length", "0")]),
        "encoded-name": ("BITS_POST", "/drop/my%20file%C3%A9.bin?job=1", [("BITS-Packet-Type", "Create-Session"), ("BITS-Supported-Protocols", GUID), ("Content-Length", "0")]),
        "get": ("GET", "/BITS-Sessions/Replies/x/responsefile.bin", [("Range", "bytes=0-511")]),
        "lowercase-method": ("bits_post", t, [("BITS-Packet-Type", "Ping"), ("Content-Length", "0")]),
        "long-session-id": ("BITS_POST", t, [("BITS-Packet-Type", "Close-Session"), ("BITS-Session-Id", "x" * 120), ("Content-Length", "0")]),
    }
    for name, (m, target, headers) in seeds.items():
        write("packet", name, head(m, target, headers))


def range_seeds():
    for i, value in enumerate([
        "bytes 0-65535/150000",
        "bytes 65536-149999/150000",
        "Bytes 0-0/1",
        "BYTES 131072-149999/150000",
        "  bytes   1-2/3 ",
        "bytes 0-18446744073709551614/18446744073709551615",
        "bytes 0-1/18446744073709551616",
        "bytes 00000000000000000001-2/3",
        "bytes */150000",
        "bytes 0-99/*",
        "bytes 9-0/20",
        "bytes 0-20/20",
        "bytes=0-9/20",
        "bytes\t0-9/20",
        "bytes -1-2/3",
        "bytes 1-2/3/4",
    ]):
        write("content_range", f"range-{i:02}", value)


def one_liner(rule):
    words = []
    for key, value in rule.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        elif isinstance(value, list):
            text = json.dumps(value, separators=(",", ":"))
        elif any(c.isspace() for c in value) or not value:
            text = json.dumps(value)
        else:
            text = value
        words.append(f"{key}={text}")
    return " ".join(words)


def profile_seeds(rng):
    for path in sorted((ROOT / "profiles").glob("*.toml")):
        shutil.copyfile(path, SEEDS / "profile" / path.name)
        rules = tomllib.loads(path.read_text()).get("rule", [])
        text = "\n".join(one_liner(r) for r in rules) + "\n"
        tail = bytes(rng.randrange(256) for _ in range(rng.randrange(32, 400)))
        write("fault_plan", path.stem, text.encode() + b"\0" + tail)


def connection_seeds():
    # Control bytes: settings, rule set, chunk seed (2 bytes); see bitsmock::fuzzing::connection.
    def seed(name, settings, rules, chunking, *parts):
        write("connection", name, bytes([settings, rules]) + chunking.to_bytes(2, "big") + b"".join(parts))

    t = "/drop/report.bin"
    # docs/protocol.md §12.1: Ping (draws ID[0]), Create (ID[1]), two fragments, Close.
    upload = [ping(), create(), fragment(ID[1], 0, 99, 150), fragment(ID[1], 100, 149, 150), close(ID[1])]
    seed("plain-upload", 0, 0, 0, *upload)
    seed("plain-upload-chunked", 0, 0, 0x0307, *upload)
    seed("plain-upload-lies", 0, 1, 0, *upload)
    seed("plain-upload-resets", 0, 2, 0x1001, *upload)
    seed("plain-upload-lost-acks", 0, 3, 0, *upload)
    seed("plain-upload-both-headers-host-id", 0b110000, 0, 0, *upload)
    # §12.2: lost Ack, resume and offset correction; gap; total mismatch.
    seed("resume", 0, 0, 0,
         create(), fragment(ID[0], 0, 9, 20), fragment(ID[0], 0, 9, 20), fragment(ID[0], 5, 14, 20),
         fragment(ID[0], 18, 19, 20), fragment(ID[0], 15, 17, 30), fragment(ID[0], 15, 19, 20), close(ID[0]))
    seed("resume-strict", 0b1, 0, 0,
         create(), fragment(ID[0], 0, 9, 20), fragment(ID[0], 5, 14, 20), fragment(ID[0], 10, 19, 20), close(ID[0]))
    # §12.3: upload-reply, then fetch the reply with a range.
    reply = "/reply/in.xml"
    reply_path = "/BITS-Sessions/Replies/" + ID[0][1:-1].lower() + "/responsefile.bin"
    seed("upload-reply", 0b100000, 0, 0,
         create(reply), fragment(ID[0], 0, 3, 4, reply),
         head("GET", reply_path, [("Host", "node1.farm.test"), ("Range", "bytes=0-9")]).encode(),
         head("HEAD", reply_path, [("Host", "node1.farm.test")]).encode(),
         close(ID[0], reply))
    # §12.4: session lost, cancellation, limits.
    seed("cancel", 0, 0, 0,
         create(), fragment(ID[0], 0, 4, 10), cancel(ID[0]), fragment(ID[0], 5, 9, 10), close(ID[0]))
    seed("limits", 0b1010, 0, 0,
         create(), fragment(ID[0], 0, 31, 64), fragment(ID[0], 0, 15, 64), fragment(ID[0], 0, 9, 101), close(ID[0]))
    seed("twice-same-destination", 0, 0, 0,
         create(), create(), fragment(ID[0], 0, 0, 1), close(ID[0]), create(), close(ID[3]))
    seed("overwrite", 0b100, 0, 0,
         create(), close(ID[0]), create(), fragment(ID[2], 0, 1, 2), close(ID[2]))
    seed("auth", 0, 4, 0,
         ping(), create(),
         request(t, "Create-Session", [("BITS-Supported-Protocols", GUID), ("Authorization", "Basic Yml0czptb2Nr")]),
         fragment(ID[0], 0, 1, 4, extra=[("Authorization", "Basic Yml0czptb2Nr")]),
         fragment(ID[0], 2, 3, 4, extra=[("Authorization", "Basic Yml0czptb2Nr")]))
    seed("http-oddities", 0, 0, 0x4242,
         head("GET", "/", [("Host", "x")]).encode(),
         head("POST", t, [("Content-Length", "3")]).encode() + b"abc",
         head("BITS_POST", t, [("BITS-Packet-Type", "Ping"), ("Transfer-Encoding", "chunked")]).encode() + b"3\r\nabc\r\n0\r\n\r\n",
         request(t, "Fragment", [("BITS-Session-Id", SID), ("Content-Range", "bytes 0-4/5"), ("Expect", "100-continue")], b"hello"),
         head("BITS_POST", t, [("BITS-Packet-Type", "Ping")]).encode(),
         request("/../../etc/passwd", "Create-Session", [("BITS-Supported-Protocols", GUID)]),
         request("http://upload.test/drop/abs.bin", "Create-Session", [("BITS-Supported-Protocols", GUID)]))
    seed("short-body", 0, 0, 0,
         create(), request(t, "Fragment", [("BITS-Session-Id", ID[0]), ("Content-Range", "bytes 0-99/100"), ("Content-Length", "100")], b"only forty bytes of a hundred-byte body."))
    seed("garbage", 0xff, 0xff, 0xffff, bytes(range(256)))


# Inputs the fuzzer found that random bytes almost never produce, kept so that the stable replay
# exercises them: a created session whose write is only partly stored (the body ended early).
FOUND_SESSION_MACHINE = {
    "create-write-short-store": bytes.fromhex(
    "ca1dffffca1dffff48ff6bffff48ff6bffffffff7afa010bffffffff2323c24b69429c8bb8c50000ffffffff"
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"
    "ffffffffffffffffffffffffffffffffff2f2f2f2f2f2f2f2f2f2f2f2d2f2f2f2f2f2f2f2fff2fff2f2fff2f"
    "ffffff42ba860bffffffffffffffffffffffffffffffffbfffffffffffffffffffffffffffffffff73636865"
    "6d653dff696465a7742f2fffffffffffffffffffffffffffff0007ffffffffffffffffffffbfffffffffffff"
    "ffffffffffffffffffff736368656d653dff6265796f6e642d746f74616c79ffffffffffffffffffffffffff"
    "ff"
    ),
}


# Journal lines from a real run (`Config::journal`, seed 7, rules: refuse once, ping 503
# once, lose the second fragment's Ack, delay Close-Session; a reply fetched; rules swapped;
# a reset), one event kind of each. `journal` seeds: the whole run, its faulted requests,
# and a damaged file (blank, truncated and non-object lines, a kind and fields from a
# "newer" bitsmock, control characters, CRLF, no final newline).
JOURNAL_RUN = [
    "{\"seq\":1,\"at_ms\":0.06072399999999999,\"event\":\"started\",\"schema\":1,\"version\":\"0.1.0\",\"seed\":7,\"profile\":null,\"time_scale\":1.0,\"rules\":[{\"id\":0,\"name\":\"rule 1\",\"origin\":\"--fault:1\",\"fault\":\"refuse\",\"fired\":0},{\"id\":1,\"name\":\"rule 2\",\"origin\":\"--fault:2\",\"fault\":\"status\",\"fired\":0},{\"id\":2,\"name\":\"rule 3\",\"origin\":\"--fault:3\",\"fault\":\"lose-ack\",\"fired\":0},{\"id\":3,\"name\":\"rule 4\",\"origin\":\"--fault:4\",\"fault\":\"delay\",\"fired\":0}],\"settings\":{\"allow_overwrites\":false,\"body_timeout_ms\":10000,\"error_header\":\"code\",\"header_timeout_ms\":10000,\"host_id\":null,\"host_id_fallback_timeout\":null,\"listen\":\"127.0.0.1:0\",\"mark_faults\":false,\"max_fragment_size\":33554432,\"max_head_bytes\":65536,\"max_upload_size\":null,\"overlap\":\"tail\",\"profile\":null,\"reply_path\":\"/reply/\",\"root\":\"/tmp/.tmpGADXmS/root\",\"seed\":7,\"session_timeout_ms\":1209600000,\"sha256\":true,\"time_scale\":1.0}}",
    "{\"seq\":2,\"at_ms\":0.505027,\"event\":\"refused\",\"conn\":1,\"peer\":\"127.0.0.1:48598\",\"fault\":{\"rule\":0,\"name\":\"rule 1\",\"packet\":null,\"session\":0,\"index\":0,\"range\":null,\"effect\":{\"kind\":\"refused\"}}}",
    "{\"seq\":3,\"at_ms\":1.0300820000000002,\"event\":\"request\",\"conn\":2,\"peer\":\"127.0.0.1:48600\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Ping\",\"packet_label\":null,\"session\":null,\"index\":0,\"range\":null,\"received\":0,\"stored\":0,\"status\":null,\"reason\":\"fault: answered 503\",\"faults\":[{\"rule\":1,\"name\":\"rule 2\",\"packet\":\"Ping\",\"session\":0,\"index\":0,\"range\":null,\"effect\":{\"kind\":\"status\",\"status\":503}}],\"sent\":{\"sent\":\"status\",\"status\":503},\"latency_ms\":0.081122}",
    "{\"seq\":4,\"at_ms\":1.6923540000000001,\"event\":\"session-created\",\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"destination\":\"/a/b.bin\",\"reply\":false}",
    "{\"seq\":5,\"at_ms\":1.739201,\"event\":\"request\",\"conn\":2,\"peer\":\"127.0.0.1:48600\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Create-Session\",\"packet_label\":null,\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.388318}",
    "{\"seq\":6,\"at_ms\":3.051963,\"event\":\"request\",\"conn\":2,\"peer\":\"127.0.0.1:48600\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Fragment\",\"packet_label\":null,\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"index\":1,\"range\":\"0-1999/5000\",\"received\":2000,\"stored\":2000,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":1.058825}",
    "{\"seq\":7,\"at_ms\":4.533261,\"event\":\"request\",\"conn\":2,\"peer\":\"127.0.0.1:48600\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Fragment\",\"packet_label\":null,\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"index\":2,\"range\":\"2000-3999/5000\",\"received\":2000,\"stored\":2000,\"status\":200,\"reason\":null,\"faults\":[{\"rule\":2,\"name\":\"rule 3\",\"packet\":\"Fragment\",\"session\":1,\"index\":2,\"range\":\"2000-3999/5000\",\"effect\":{\"kind\":\"lost-ack\",\"how\":{\"how\":\"reset\"}}}],\"sent\":{\"sent\":\"reset\"},\"latency_ms\":1.193258}",
    "{\"seq\":8,\"at_ms\":5.251938,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Fragment\",\"packet_label\":null,\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"index\":3,\"range\":\"4000-4999/5000\",\"received\":1000,\"stored\":1000,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.195537}",
    "{\"seq\":9,\"at_ms\":5.8810579999999995,\"event\":\"committed\",\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"path\":\"a/b.bin\",\"size\":5000,\"sha256\":\"45148a6eb1c6f9a2d6d9cb7204edd1272b3c69eb1732e1fa1c6f9f324600930a\"}",
    "{\"seq\":10,\"at_ms\":14.583516,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"packet\":\"Close-Session\",\"packet_label\":null,\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[{\"rule\":3,\"name\":\"rule 4\",\"packet\":\"Close-Session\",\"session\":1,\"index\":1,\"range\":null,\"effect\":{\"kind\":\"delayed\",\"by\":5.0}}],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":8.935656}",
    "{\"seq\":11,\"at_ms\":15.365973,\"event\":\"session-created\",\"session\":{\"id\":\"{53DFDD63-5CC7-451F-99C0-D6F139912EDE}\",\"ordinal\":2},\"destination\":\"/c.bin\",\"reply\":false}",
    "{\"seq\":12,\"at_ms\":15.459899,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/c.bin\",\"packet\":\"Create-Session\",\"packet_label\":null,\"session\":{\"id\":\"{53DFDD63-5CC7-451F-99C0-D6F139912EDE}\",\"ordinal\":2},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.29126599999999997}",
    "{\"seq\":13,\"at_ms\":15.886919999999998,\"event\":\"session-gone\",\"session\":{\"id\":\"{53DFDD63-5CC7-451F-99C0-D6F139912EDE}\",\"ordinal\":2},\"why\":\"cancelled\",\"kept_file\":false}",
    "{\"seq\":14,\"at_ms\":15.958694999999999,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/c.bin\",\"packet\":\"Cancel-Session\",\"packet_label\":null,\"session\":{\"id\":\"{53DFDD63-5CC7-451F-99C0-D6F139912EDE}\",\"ordinal\":2},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.200666}",
    "{\"seq\":15,\"at_ms\":16.317677999999997,\"event\":\"session-created\",\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"destination\":\"/reply/r.bin\",\"reply\":true}",
    "{\"seq\":16,\"at_ms\":16.387659,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/reply/r.bin\",\"packet\":\"Create-Session\",\"packet_label\":null,\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.184847}",
    "{\"seq\":17,\"at_ms\":16.971704,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/reply/r.bin\",\"packet\":\"Fragment\",\"packet_label\":null,\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"index\":1,\"range\":\"0-9/10\",\"received\":10,\"stored\":10,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.291597}",
    "{\"seq\":18,\"at_ms\":22.994197,\"event\":\"reply-served\",\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"status\":200,\"bytes\":102}",
    "{\"seq\":19,\"at_ms\":23.082162,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"GET\",\"path\":\"/BITS-Sessions/Replies/daaf4c96-ba96-46b0-b467-aaa3ffc4dc0d/responsefile.bin\",\"packet\":null,\"packet_label\":null,\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"index\":0,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":0.14655500000000002}",
    "{\"seq\":20,\"at_ms\":23.724917,\"event\":\"committed\",\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"path\":\"reply/r.bin\",\"size\":10,\"sha256\":\"84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882\"}",
    "{\"seq\":21,\"at_ms\":30.050739,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/reply/r.bin\",\"packet\":\"Close-Session\",\"packet_label\":null,\"session\":{\"id\":\"{DAAF4C96-BA96-46B0-B467-AAA3FFC4DC0D}\",\"ordinal\":3},\"index\":1,\"range\":null,\"received\":0,\"stored\":0,\"status\":200,\"reason\":null,\"faults\":[{\"rule\":3,\"name\":\"rule 4\",\"packet\":\"Close-Session\",\"session\":3,\"index\":1,\"range\":null,\"effect\":{\"kind\":\"delayed\",\"by\":5.0}}],\"sent\":{\"sent\":\"status\",\"status\":200},\"latency_ms\":6.6863779999999995}",
    "{\"seq\":22,\"at_ms\":30.697342,\"event\":\"request\",\"conn\":3,\"peer\":\"127.0.0.1:48606\",\"method\":\"BITS_POST\",\"path\":\"/x\",\"packet\":null,\"packet_label\":\"Bogus\",\"session\":null,\"index\":0,\"range\":null,\"received\":0,\"stored\":0,\"status\":400,\"reason\":\"E_INVALIDARG (0x80070057)\",\"faults\":[],\"sent\":{\"sent\":\"status\",\"status\":400},\"latency_ms\":0.05348}",
    "{\"seq\":23,\"at_ms\":31.114253,\"event\":\"rules-changed\",\"rules\":[{\"id\":0,\"name\":\"rule 1\",\"origin\":\"--fault:1\",\"fault\":\"lie\",\"fired\":0}]}",
    "{\"seq\":24,\"at_ms\":31.213991,\"event\":\"reset\",\"uploads_cleared\":false}",
    "{\"seq\":25,\"at_ms\":31.24545,\"event\":\"rules-changed\",\"rules\":[{\"id\":0,\"name\":\"rule 1\",\"origin\":\"--fault:1\",\"fault\":\"refuse\",\"fired\":0},{\"id\":1,\"name\":\"rule 2\",\"origin\":\"--fault:2\",\"fault\":\"status\",\"fired\":0},{\"id\":2,\"name\":\"rule 3\",\"origin\":\"--fault:3\",\"fault\":\"lose-ack\",\"fired\":0},{\"id\":3,\"name\":\"rule 4\",\"origin\":\"--fault:4\",\"fault\":\"delay\",\"fired\":0}]}",
    "{\"seq\":26,\"at_ms\":31.510336,\"event\":\"stopped\",\"rules\":[{\"id\":0,\"name\":\"rule 1\",\"origin\":\"--fault:1\",\"fault\":\"refuse\",\"fired\":0},{\"id\":1,\"name\":\"rule 2\",\"origin\":\"--fault:2\",\"fault\":\"status\",\"fired\":0},{\"id\":2,\"name\":\"rule 3\",\"origin\":\"--fault:3\",\"fault\":\"lose-ack\",\"fired\":0},{\"id\":3,\"name\":\"rule 4\",\"origin\":\"--fault:4\",\"fault\":\"delay\",\"fired\":0}]}",
]
JOURNAL_DAMAGED = [
    "{\"seq\":4,\"at_ms\":1.6923540000000001,\"event\":\"session-created\",\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"destination\":\"/a/b.bin\",\"reply\":false}",
    "",
    "{\"seq\":6,\"at_ms\":3.051963,\"event\":\"request\",\"conn\":2,\"peer\":\"127.0.0.1:48600\",\"method\":\"BITS_POST\",\"path\":\"/a/b.bin\",\"pa",
    "[1, 2, 3]",
    "{\"seq\":30,\"at_ms\":40.5,\"event\":\"host-died\",\"host\":\"b\",\"after\":{\"n\":1}}",
    "{\"seq\":31,\"at_ms\":41.0,\"event\":\"session-created\",\"session\":{\"id\":\"{BB53324C-F162-4F0F-AB06-9B4B85E5D0A3}\",\"ordinal\":1},\"destination\":\"/a\\nb\\u001b[2J\",\"reply\":false,\"tls\":true}\r",
    "{\"seq\":32,\"at_ms\":42.0,\"event\":\"request\",\"conn\":4,\"packet\":\"Fragment\",\"faults\":[{\"name\":\"r\",\"effect\":{\"kind\":\"teleported\",\"to\":\"mars\"}}],\"sent\":{\"sent\":\"quantum\"},\"status\":200}",
    "{\"seq\":33}",
]


def journal_seeds():
    write("journal", "run", "".join(line + "\n" for line in JOURNAL_RUN))
    write("journal", "faults", "".join(JOURNAL_RUN[i] + "\n" for i in (1, 2, 6, 9)))
    write("journal", "damaged", "\n".join(JOURNAL_DAMAGED))


def admin_seeds():
    """Control API requests: request line, content type, authorization, then the body."""
    def req(name, line, body=b"", content_type="", authorization=""):
        if isinstance(body, str):
            body = body.encode()
        write("admin", name, f"{line}\n{content_type}\n{authorization}\n".encode() + body)

    req("health", "GET /health")
    req("health-token", "GET /health", authorization="Bearer t0ken")
    req("config", "GET /config")
    req("metrics", "GET /metrics")
    req("sessions", "GET /sessions")
    req("forget-session", f"DELETE /sessions/%7B{SID[1:-1].lower()}%7D")
    req("journal", "GET /journal?since=3&session=2&packet=fragment&limit=10&wait=1500ms")
    req("journal-by-id", f"GET /journal?session={SID}")
    req("uploads", "GET /uploads")
    req("rules", "GET /rules")
    req("put-rules-profile", "PUT /rules", (ROOT / "profiles" / "lost-acks.toml").read_text(), "application/toml")
    req("put-rules-lines", "PUT /rules",
        json.dumps({"rules": ["packet=fragment nth=3 fault=lose-ack how=reset", "fault=delay delay=5ms"]}),
        "application/json")
    req("post-rule-text", "POST /rules", "packet=ping fault=status status=503", "text/plain")
    req("post-rule-json", "POST /rules",
        json.dumps({"rule": "packet=fragment fault=lose-ack", "times": 2, "for": "10s"}),
        "application/json; charset=utf-8")
    req("put-rules-objects", "PUT /rules",
        json.dumps({"rules": [{"packet": "fragment", "nth": 3, "fault": "lose-ack", "how": "reset"}]}),
        "application/json")
    req("post-rule-object", "POST /rules",
        json.dumps({"rule": {"name": "down", "packet": "ping", "fault": "status", "status": 503}}),
        "application/json")
    req("disarm", "DELETE /rules/4")
    req("reset", "POST /reset?uploads=true")
    req("shutdown", "POST /shutdown")
    req("wrong-method", "PATCH /rules")
    req("bad-percent", "GET /journal?since=%zz")


def main():
    if SEEDS.exists():
        shutil.rmtree(SEEDS)
    (SEEDS / "profile").mkdir(parents=True)
    rng = random.Random(20240601)
    packet_seeds()
    range_seeds()
    profile_seeds(rng)
    connection_seeds()
    journal_seeds()


    admin_seeds()
    for i, n in enumerate([16, 64, 128, 256, 512, 1024, 2048, 4096]):
        write("session_machine", f"random-{i:02}", bytes(rng.randrange(256) for _ in range(n)))
    for name, data in FOUND_SESSION_MACHINE.items():
        write("session_machine", name, data)


if __name__ == "__main__":
    main()
