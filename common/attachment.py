"""An attachment's identity: (network, containerID, ifname) as one key that cannot collide.

Every file name and lookup built from a container ID and an interface name
goes through key().  Joining the two with "-", as earlier versions did, let
(pod-1, eth0) and (pod, 1-eth0) share one file, so one pod's DEL or GC tore
down another's network.  The network is the directory a key lives in.

The key escapes both parts, then joins them with ":":
  - characters other than [A-Za-z0-9_.-] become %XX per UTF-8 byte, so
    neither part can contain ":" and the split is unambiguous;
  - ":" never occurs in the names earlier versions wrote (container IDs and
    interface names may not contain it), so old and new names never meet;
  - a key longer than MAX_KEY (a long container ID) becomes "=" and a
    SHA-256 of the pair; "=" never starts an escaped key.  Such a key cannot
    be decoded from the name: the pair is stored inside the file, and every
    reader compares it (a file naming another pair counts as absent).
"""

from common.startup import sha256  # noqa: F401  (re-exported: the store's owner hash)

SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
SEPARATOR = ":"
HASHED = "="
# NAME_MAX is 255; ".json", ".lock" and a temp suffix must still fit
MAX_KEY = 200


def _escape(text: str) -> str:
    if all(ch in SAFE for ch in text):
        return text
    out = []
    for ch in text:
        if ch in SAFE:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _unescape(text: str) -> str:
    if "%" not in text:
        if not all(ch in SAFE for ch in text):
            raise ValueError(f"unescaped character in {text!r}")
        return text
    raw = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not all(c in "0123456789ABCDEF" for c in pair):
                raise ValueError(f"bad escape in {text!r}")
            raw.append(int(pair, 16))
            i += 3
        elif ch in SAFE:
            raw += ch.encode()
            i += 1
        else:
            raise ValueError(f"unescaped character in {text!r}")
    return raw.decode("utf-8", "surrogatepass")


def digest(container_id: str, ifname: str) -> str:
    """A fixed-length name for the pair, where a name must be short or an identifier (firewall chains)."""
    return sha256(f"{container_id}\0{ifname}".encode("utf-8", "surrogatepass")).hexdigest()


def key(container_id: str, ifname: str) -> str:
    """The one file-name-safe key of (containerID, ifname); distinct pairs never share one."""
    text = _escape(container_id) + SEPARATOR + _escape(ifname)
    if len(text) <= MAX_KEY:
        return text
    return HASHED + digest(container_id, ifname)


def decode(name: str) -> tuple[str, str] | None:
    """The pair a key names; None for a hashed key (read the pair stored in its file).

    Raises ValueError for a name that no key() produces: never guess.
    """
    if name.startswith(HASHED):
        if len(name) != 65 or not all(c in "0123456789abcdef" for c in name[1:]):
            raise ValueError(f"not an attachment key: {name!r}")
        return None
    cid, sep, ifname = name.partition(SEPARATOR)
    if not sep or SEPARATOR in ifname:
        raise ValueError(f"not an attachment key: {name!r}")
    pair = (_unescape(cid), _unescape(ifname))
    if key(*pair) != name:  # e.g. lower-case escapes, or a short pair spelled hashed
        raise ValueError(f"not the canonical key: {name!r}")
    return pair


def legacy_splits(name: str) -> list[tuple[str, str]]:
    """Every (containerID, ifname) an earlier version's "<cid>-<ifname>" name could stand for."""
    from common.skel import container_id_problem, ifname_problem

    out = []
    for i, ch in enumerate(name):
        if ch == "-":
            cid, ifname = name[:i], name[i + 1 :]
            if not container_id_problem(cid) and not ifname_problem(ifname):
                out.append((cid, ifname))
    return out
