"""A small client of etcd's v3 JSON gateway (/v3/), one HTTP/1.1 request per call.

Chosen by measured import cost (docs/vxlan.md): etcd3gw 2.7.0 costs about
127 ms per process start (requests, futurist, pbr) and http.client about
28 ms (it imports email.parser); this client adds about 1 ms, which every
pod start would otherwise pay.  It is also explicit where etcd3gw is quiet:
a broken or compacted watch raises, instead of silently ending its stream.
"""

import base64
import json
import re
import socket
import time
from ipaddress import ip_address
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl  # at run time only TLS setups import it (Client._connect)

GATEWAY = "/v3/"
MAX_BODY = 64 << 20
# A member whose host vanished never answers a SYN: without a bound of its own, every
# request that tries it first would wait the whole etcd.timeout.  A live member on the
# underlay accepts in milliseconds.
CONNECT_TIMEOUT = 1.0
# The member that last answered, per endpoint list, for this process (`vxlan sync --watch`
# makes many requests; each converge builds a new Client).
_preferred: dict[tuple, int] = {}


class EtcdError(Exception):
    """The store could not be reached or refused the request."""


def b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(prefix: str) -> str:
    """The range_end that selects every key starting with prefix."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


class KV:
    __slots__ = ("key", "value", "create_revision", "mod_revision", "lease")

    def __init__(self, raw: dict):
        self.key = unb64(raw.get("key")).decode()
        self.value = unb64(raw.get("value"))
        self.create_revision = int(raw.get("create_revision", 0))
        self.mod_revision = int(raw.get("mod_revision", 0))
        self.lease = int(raw.get("lease", 0))


# a host name or an IPv4 address, in ASCII: a name that would need the idna codec is refused, not looked up
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\Z")


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of http(s)://HOST:PORT[/...], HOST a name, an IPv4 or an [IPv6] address.

    Raises ValueError.  The config loader and the client share it: an
    endpoint that loads is one the client can use.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError("want http://HOST:PORT or https://HOST:PORT")
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        host, bracket, port = hostport[1:].partition("]")
        if not bracket:
            raise ValueError("an IPv6 address needs its closing ']'")
        try:
            is_v6 = ip_address(host).version == 6
        except ValueError:
            is_v6 = False
        if not is_v6:
            raise ValueError(f"[{host[:80]}] is not an IPv6 address")
    else:
        host, colon, port = hostport.partition(":")
        port = colon + port
        if ":" in port[1:]:
            raise ValueError("write an IPv6 address as [ADDRESS]:PORT")
        if not _HOST.match(host):
            raise ValueError(f"{host[:80]!r} is not a host name or IPv4 address")
        if host.replace(".", "").isdigit():
            try:
                ip_address(host)
            except ValueError:
                raise ValueError(f"{host!r} is not an IPv4 address") from None
    digits = port[1:]
    if not port.startswith(":") or not (digits.isascii() and digits.isdigit() and 0 < int(digits) <= 65535):
        raise ValueError(f"want :PORT (1-65535) after the host, got {port[:20]!r}")
    return scheme, host, int(digits)


class Client:
    def __init__(self, endpoints, timeout: float = 5.0, ca_file: str = "", cert_file: str = "", key_file: str = ""):
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self.tls = (ca_file, cert_file, key_file)
        self._ssl: ssl.SSLContext | None = None
        self.current = self.endpoints[0]  # the member the last request went to

    # --- transport ------------------------------------------------------------

    def _ordered(self) -> list[tuple[str, str, int]]:
        """The endpoints, the one that last answered first (then the others in the listed order)."""
        first = _preferred.get(tuple(self.endpoints), 0) % len(self.endpoints)
        return self.endpoints[first:] + self.endpoints[:first]

    def _answered(self, endpoint: tuple[str, str, int]) -> None:
        _preferred[tuple(self.endpoints)] = self.endpoints.index(endpoint)

    def failed(self, endpoint: tuple[str, str, int]) -> None:
        """Try another member first from now on, if this one was the first choice."""
        key, index = tuple(self.endpoints), self.endpoints.index(endpoint)
        if _preferred.get(key, 0) % len(self.endpoints) == index:
            _preferred[key] = (index + 1) % len(self.endpoints)

    def _connect(self, scheme: str, host: str, port: int, timeout: float | None = None) -> socket.socket:
        # an ASCII name as bytes skips the idna codec, which a frozen build may not carry
        address = (host.encode() if host.isascii() else host, port)
        budget = self.timeout if timeout is None else timeout
        sock = socket.create_connection(address, timeout=min(budget, CONNECT_TIMEOUT))  # type: ignore[arg-type]  # typeshed allows a str host only; bytes works
        sock.settimeout(budget)
        if scheme == "https":
            if self._ssl is None:
                import ssl  # only TLS setups pay for it

                ca, cert, key = self.tls
                self._ssl = ssl.create_default_context(cafile=ca or None)
                if cert:
                    self._ssl.load_cert_chain(cert, key or None)
            sock = self._ssl.wrap_socket(sock, server_hostname=host)
        return sock

    def _open(self, path: str, body: dict, endpoints=None):
        """Send a POST to the first endpoint that answers; return (socket, reader, headers).

        The endpoint that last answered is tried first.  All attempts together
        take at most etcd.timeout plus one connect timeout: a cluster that lost
        quorum answers no member, and the caller must hear so in bounded time.
        """
        data = json.dumps(body).encode()
        errors = []
        deadline = time.monotonic() + self.timeout + CONNECT_TIMEOUT
        for endpoint in endpoints or self._ordered():
            scheme, host, port = endpoint
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                errors.append(f"{host}:{port}: not tried, {self.timeout + CONNECT_TIMEOUT:g}s spent")
                continue
            try:
                sock = self._connect(scheme, host, port, min(self.timeout, remaining))
            except OSError as err:
                errors.append(f"{host}:{port}: {err.strerror or err}")
                self.failed(endpoint)
                continue
            try:
                head = (
                    f"POST {GATEWAY}{path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                )
                sock.sendall(head.encode() + data)
                reader = _Reader(sock)
                status, headers = _read_head(reader)
            except (OSError, ValueError) as err:
                sock.close()
                errors.append(f"{host}:{port}: {err}")
                continue
            if status != 200:
                payload = _read_body(reader, headers)
                sock.close()
                raise EtcdError(f"etcd {path}: HTTP {status}: {payload[:300].decode(errors='replace')}")
            self._answered(endpoint)
            self.current = endpoint
            return sock, reader, headers
        raise EtcdError("etcd unreachable: " + "; ".join(errors))

    def healthy(self, endpoint: tuple[str, str, int]) -> bool:
        """Whether this member answers now and knows a leader (a member cut off from its cluster knows none)."""
        try:
            sock, reader, headers = self._open("maintenance/status", {}, endpoints=[endpoint])
        except EtcdError:
            return False
        try:
            return int(json.loads(_read_body(reader, headers) or b"{}").get("leader", 0)) != 0
        except (OSError, ValueError):
            return False
        finally:
            sock.close()

    def call(self, path: str, body: dict) -> dict:
        sock, reader, headers = self._open(path, body)
        try:
            return json.loads(_read_body(reader, headers) or b"{}")
        except (OSError, ValueError) as err:
            raise EtcdError(f"etcd {path}: {err}") from None
        finally:
            sock.close()

    # --- the calls the overlay uses ----------------------------------------------

    def get_prefix(self, prefix: str) -> tuple[int, list[KV]]:
        reply = self.call("kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        return int(reply["header"]["revision"]), [KV(kv) for kv in reply.get("kvs", [])]

    def newest(self, prefix: str) -> tuple[int, int]:
        """(how many keys under prefix, the highest mod_revision among them): one small reply at any size.

        Any put under the prefix raises the second, any delete lowers the first:
        equal pairs mean the keys did not change.
        """
        body = {"key": b64(prefix), "range_end": prefix_end(prefix), "limit": "1", "sort_order": "DESCEND", "sort_target": "MOD", "keys_only": True}
        reply = self.call("kv/range", body)
        kvs = reply.get("kvs", [])
        return int(reply.get("count", 0)), int(kvs[0].get("mod_revision", 0)) if kvs else 0

    def txn(self, compare: list, success: list, failure: list | tuple = ()) -> bool:
        reply = self.call("kv/txn", {"compare": compare, "success": success, "failure": list(failure)})
        return bool(reply.get("succeeded"))

    def put(self, key: str, value: bytes, lease: int = 0) -> None:
        self.call("kv/put", {"key": b64(key), "value": b64(value), **({"lease": str(lease)} if lease else {})})

    def delete_prefix(self, prefix: str) -> int:
        reply = self.call("kv/deleterange", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        return int(reply.get("deleted", 0))

    def grant(self, ttl: int) -> int:
        return int(self.call("lease/grant", {"TTL": str(ttl)})["ID"])

    def keepalive(self, lease: int) -> int:
        """The lease's remaining TTL; 0 or less once it has expired."""
        reply = self.call("lease/keepalive", {"ID": str(lease)})
        return int(reply.get("result", {}).get("TTL", 0))

    def watch(self, prefix: str, start_revision: int, idle: float):
        """Yield lists of events from start_revision on; yield [] after `idle` seconds of quiet.

        Raises EtcdError when the stream breaks or the revision was compacted:
        the caller re-lists and watches again.
        """
        body = {"create_request": {"key": b64(prefix), "range_end": prefix_end(prefix), "start_revision": str(start_revision)}}
        sock, reader, headers = self._open("watch", body)
        sock.settimeout(idle)
        # a member whose host vanished leaves the stream half-open and silent: the kernel's
        # keepalive probes find that out in about two seconds, and the read then fails
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in ((socket.TCP_KEEPIDLE, 1), (socket.TCP_KEEPINTVL, 1), (socket.TCP_KEEPCNT, 1)):
            sock.setsockopt(socket.IPPROTO_TCP, option, value)
        messages = _Messages()
        try:
            while True:
                try:
                    chunk = reader.chunk()
                except TimeoutError:
                    yield []
                    continue
                if chunk is None:
                    raise EtcdError("etcd watch stream ended")
                for message in messages.feed(chunk):
                    result = json.loads(message).get("result", {})
                    if result.get("canceled") or result.get("compact_revision"):
                        raise EtcdError(f"etcd watch canceled (compacted to {result.get('compact_revision', '?')})")
                    events = result.get("events")
                    if events:
                        yield events
        except (OSError, ValueError) as err:
            raise EtcdError(f"etcd watch: {err}") from None
        finally:
            sock.close()


# --- compare and request builders (the gateway's JSON shapes) ---------------------


def absent(key: str) -> dict:
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def unchanged(key: str, mod_revision: int) -> dict:
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(mod_revision)}


def put_op(key: str, value: bytes, lease: int = 0) -> dict:
    op = {"key": b64(key), "value": b64(value)}
    if lease:
        op["lease"] = str(lease)
    return {"request_put": op}


def delete_op(key: str) -> dict:
    return {"request_delete_range": {"key": b64(key)}}


# --- HTTP/1.1 framing ------------------------------------------------------------


class _Reader:
    """Buffered reads from a socket that survive a timeout (a socket.makefile reader does not)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        data = self.sock.recv(65536)  # a timeout raises here, leaving what is buffered intact
        self.buf += data
        return bool(data)

    def readline(self, limit: int) -> bytes:
        while b"\n" not in self.buf and len(self.buf) < limit:
            if not self._fill():
                break
        end = self.buf.find(b"\n")
        end = len(self.buf) if end < 0 else end + 1
        line, self.buf = bytes(self.buf[:end]), self.buf[end:]
        return line

    def read(self, size: int) -> bytes:
        while len(self.buf) < size:
            if not self._fill():
                break
        data, self.buf = bytes(self.buf[:size]), self.buf[size:]
        return data

    def chunk(self) -> bytes | None:
        """One chunk of a chunked body, consumed only once complete (None at the end of the body)."""
        while True:
            eol = self.buf.find(b"\r\n")
            if eol >= 0:
                size = int(bytes(self.buf[:eol]).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return None
                end = eol + 2 + size + 2
                if len(self.buf) >= end:
                    data = bytes(self.buf[eol + 2 : eol + 2 + size])
                    del self.buf[:end]
                    return data
            if not self._fill():
                return None


class _Messages:
    """The gateway's stream body as messages: JSON documents, each ended by a newline.

    HTTP chunks are not messages: etcd's gateway writes a message larger than its
    buffer (about 4 KB) as one chunk and its newline as another, and a larger
    one over several chunks.
    """

    def __init__(self, limit: int = MAX_BODY):
        self.pending = bytearray()
        self.limit = limit

    def feed(self, chunk: bytes) -> list[bytes]:
        self.pending += chunk
        *complete, rest = self.pending.split(b"\n")
        if len(rest) > self.limit:
            raise ValueError(f"a watch message over {self.limit} bytes")
        self.pending = bytearray(rest)
        return [bytes(m) for m in complete if m.strip()]


def _read_head(reader) -> tuple[int, dict]:
    status_line = reader.readline(8192)
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    headers = {}
    while True:
        line = reader.readline(8192)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def _read_body(reader, headers: dict) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while (chunk := reader.chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)
    length = int(headers.get("content-length", "0"))
    if length > MAX_BODY:
        raise ValueError(f"response of {length} bytes")
    return reader.read(length)
