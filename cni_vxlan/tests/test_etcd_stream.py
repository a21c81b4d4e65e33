"""The etcd gateway's watch stream read as messages, not as HTTP chunks (issue 14: large watch messages).

The gateway ends each message with a newline; a message larger than its buffer
(about 4 KB) arrives as one chunk and its newline as another, a larger one over
several chunks.  The unit tests feed the framing directly and through a local
server that chunks the way etcd does; the root test watches a real etcd.
"""

import base64
import json
import os
import socket
import sys
import threading

import pytest

from cni_vxlan.etcd import Client, EtcdError, _Messages

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def event(key: str, value: bytes) -> dict:
    return {"type": "PUT", "kv": {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value).decode(), "mod_revision": "7"}}


def message(*events: dict, **result) -> bytes:
    return json.dumps({"result": dict(result, events=list(events)) if events else result}).encode()


@pytest.mark.unit
def test_messages_are_cut_at_newlines_whatever_the_chunks():
    big = message(event("/p/a", b"x" * 20000))
    small = message(event("/p/b", b"y"))
    m = _Messages()
    assert m.feed(big) == []  # a large message alone: its newline is still to come
    assert m.feed(b"\n") == [big]
    assert m.feed(big[:100]) == [] and m.feed(big[100:5000]) == [] and m.feed(big[5000:] + b"\n" + small) == [big]
    assert m.feed(b"\n" + small + b"\n") == [small, small]  # several in one chunk
    assert m.feed(b"\r\n") == []  # blank lines carry nothing


@pytest.mark.unit
def test_a_message_without_end_is_bounded():
    m = _Messages(limit=1000)
    with pytest.raises(ValueError, match="over 1000 bytes"):
        m.feed(b"{" + b"x" * 1000)


def serve_watch(chunks: list[bytes]) -> tuple[socket.socket, threading.Thread]:
    """A one-shot HTTP server on 127.0.0.1 answering the watch with these chunks, then ending the body."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            head, _, body = request.partition(b"\r\n\r\n")
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            while len(body) < length:
                body += conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            for chunk in chunks:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.unit
def test_watch_yields_a_large_message_split_as_etcd_splits_it():
    big = message(event("/p/a", os.urandom(12000)))  # about 16 KB of base64: over the gateway's buffer
    second = message(event("/p/b", b"v"), event("/p/c", b"w"))
    created = message(created=True)
    chunks = [created + b"\n", big[:4096], big[4096:], b"\n", second, b"\n"]
    listener, thread = serve_watch(chunks)
    try:
        client = Client([f"http://127.0.0.1:{listener.getsockname()[1]}"], timeout=5)
        got = []
        with pytest.raises(EtcdError, match="stream ended"):  # the server ends the body after the chunks
            for events in client.watch("/p/", 1, idle=5):
                got.append([base64.b64decode(e["kv"]["key"]).decode() for e in events])
    finally:
        listener.close()
        thread.join(10)
    assert got == [["/p/a"], ["/p/b", "/p/c"]]


@pytest.mark.unit
def test_a_compaction_in_a_split_message_still_ends_the_watch():
    cancel = message(canceled=True, compact_revision="42")
    listener, thread = serve_watch([cancel[:10], cancel[10:], b"\n"])
    try:
        client = Client([f"http://127.0.0.1:{listener.getsockname()[1]}"], timeout=5)
        with pytest.raises(EtcdError, match="compacted to 42"):
            list(client.watch("/p/", 1, idle=5))
    finally:
        listener.close()
        thread.join(10)


WATCH_LIVE = """
import base64, sys, threading, time
sys.path.insert(0, sys.argv[1])
from cni_vxlan.etcd import Client
client = Client([sys.argv[2]], timeout=5)
revision, _ = client.get_prefix("/cnit-big/")
threading.Timer(0.5, client.put, ("/cnit-big/k", b"z" * int(sys.argv[3]))).start()
threading.Timer(1.0, client.put, ("/cnit-big/k", b"after")).start()
deadline, seen = time.monotonic() + 20, []
for events in client.watch("/cnit-big/", revision + 1, idle=1):
    seen += [len(base64.b64decode(e["kv"]["value"])) for e in events]
    if len(seen) >= 2 or time.monotonic() > deadline:
        break
print(*seen)
"""


@pytest.mark.root
def test_a_real_etcd_watch_delivers_values_larger_than_a_read():
    """A live watch, as `vxlan sync --watch` holds it, sees puts of every size whole, and goes on after them."""
    from conformance.testbed import Testbed

    with Testbed() as bed:
        bed.start_etcd()
        for size in (100, 6000, 100000):
            out = bed.etcd_ns.exec(sys.executable, "-c", WATCH_LIVE, REPO, bed.etcd_endpoint, str(size), timeout=60)
            assert out.split() == [str(size), "5"], (size, out)
