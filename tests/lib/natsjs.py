"""Read a run's events straight from JetStream (raw NATS protocol, standard library only).

The distributed suite uses it to check the stream itself, not a watcher's filtered
view: after a takeover's reset, no message of an earlier attempt was stored.
"""
import base64
import json
import socket
import time
import urllib.parse


class Nats:
    def __init__(self, urls, timeout=5.0, headers=False):
        last = None
        creds = {}
        for u in urls.split(","):
            rest = u.split("://", 1)[-1]
            hostport = rest.rsplit("@", 1)[-1]
            if "@" in rest and ":" in rest.rsplit("@", 1)[0]:
                user, pw = rest.rsplit("@", 1)[0].split(":", 1)
                creds = {"user": urllib.parse.unquote(user), "pass": urllib.parse.unquote(pw)}
            host, port = hostport.rsplit(":", 1)
            try:
                self.sock = socket.create_connection((host, int(port)), timeout=timeout)
                break
            except OSError as e:
                last = e
        else:
            raise AssertionError(f"no NATS server answered at {urls}: {last}")
        self.buf = b""
        self.timeout = timeout
        self._line()  # INFO
        connect = dict(verbose=False, pedantic=False, headers=bool(headers), **creds)
        self.sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        while self._line() != b"PONG":
            pass
        self.sock.sendall(b"SUB _INBOX.tethertest 1\r\n")

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise AssertionError("NATS closed the connection")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def request(self, subject, payload):
        body = json.dumps(payload).encode()
        self.sock.sendall(b"PUB %s _INBOX.tethertest %d\r\n%s\r\n" % (subject.encode(), len(body), body))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            if line.startswith(b"MSG "):
                n = int(line.split()[-1])
                while len(self.buf) < n + 2:
                    self._fill()
                data, self.buf = self.buf[:n], self.buf[n + 2:]
                return json.loads(data)
        raise AssertionError(f"no answer to {subject}")

    def close(self):
        self.sock.close()


def headers(raw):
    out = {}
    for line in raw.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def stamp_s(t):
    """'2026-11-29T19:17:05.123456789Z' -> seconds since midnight (float)."""
    hms = t.split("T", 1)[1].rstrip("Z")
    h, m, sec = hms.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec[:12])


def largest_gap_s(msgs):
    """The longest time between two consecutive stored messages."""
    ts = [stamp_s(m[3]) for m in msgs if m[3]]
    return max((b - a for a, b in zip(ts, ts[1:])), default=0.0)


def run_messages(urls, run_id, stream="TETHER_EVENTS"):
    """Every stored message of a run, in stream order: [(seq, headers, data, time)]
    (time: the server's RFC 3339 timestamp, as a string)."""
    nc = Nats(urls)
    out, seq = [], 1
    try:
        while True:
            r = nc.request(f"$JS.API.STREAM.MSG.GET.{stream}",
                           {"seq": seq, "next_by_subj": f"tether.ev.{run_id}"})
            if "error" in r:
                if r["error"].get("code") == 404:
                    return out
                raise AssertionError(f"stream read failed: {r['error']}")
            m = r["message"]
            h = headers(base64.b64decode(m.get("hdrs", "")).decode()) if m.get("hdrs") else {}
            out.append((m["seq"], h, base64.b64decode(m.get("data", "")).decode(), m.get("time", "")))
            seq = m["seq"] + 1
    finally:
        nc.close()
