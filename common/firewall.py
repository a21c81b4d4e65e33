"""nftables and iptables, driven through their own tools (no shell, bounded time).

Rule text is built only from validated values (canonical addresses, names
matching strict patterns, MACs we formatted), and quotes are stripped from
comments, so nothing a request carries can inject rules.
"""

import os

from common import startup
from common.errors import CNIError, Code

_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin")
TIMEOUT = 15.0


def _proc():
    from common import proc  # subprocess costs ~2 ms per start; only rule changes need it (docs/performance.md)

    return proc


def tool(name: str) -> str | None:
    for directory in _SBIN:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def comment(text: str, limit: int = 128) -> str:
    """A rule's comment as the tools store it: no quotes or control characters, at most `limit` bytes."""
    clean = "".join(ch for ch in text if ch != '"' and ord(ch) >= 32)
    return clean.encode()[:limit].decode("utf-8", "ignore")


def quote(text: str, limit: int = 128) -> str:
    """comment(), quoted for a rule."""
    return '"' + comment(text, limit) + '"'


def nft(script: str, what: str) -> None:
    """Apply a script as one nftables transaction: all of it or nothing."""
    binary = tool("nft")
    if binary is None:
        raise CNIError(Code.INVALID_CONFIG, f"{what}: nft is not installed", "install nftables, or choose ipMasqBackend iptables")
    rc, out, err = _proc().run([binary, "-f", "-"], script.encode(), TIMEOUT, what=what)
    if rc != 0:
        raise CNIError(Code.KERNEL_REFUSED, f"{what} failed", err.decode(errors="replace").strip()[:500])


def nft_rules(family: str, table: str, chain: str) -> list[dict] | None:
    """The rules of a chain as nft's JSON objects; None if the table or chain does not exist."""
    binary = tool("nft")
    if binary is None:
        return None
    rc, out, err = _proc().run([binary, "-j", "list", "chain", family, table, chain], timeout=TIMEOUT, what="nft list")
    if rc != 0:
        if b"No such file or directory" in err or b"does not exist" in err:
            return None
        raise CNIError(Code.KERNEL_REFUSED, f"listing nftables chain {family} {table} {chain} failed", err.decode(errors="replace").strip()[:500])
    return [item["rule"] for item in startup.loads(out.decode()).get("nftables", []) if "rule" in item]


def nft_chains(family: str, table: str) -> list[str]:
    binary = tool("nft")
    if binary is None:
        return []
    rc, out, _ = _proc().run([binary, "-j", "list", "table", family, table], timeout=TIMEOUT, what="nft list")
    if rc != 0:
        return []
    return [item["chain"]["name"] for item in startup.loads(out.decode()).get("nftables", []) if "chain" in item]


def iptables_save(version: int, table: str = "nat") -> str | None:
    """The table in iptables-save syntax; None when iptables is not installed."""
    binary = tool("iptables-save" if version == 4 else "ip6tables-save")
    if binary is None:
        return None
    rc, out, err = _proc().run([binary, "-t", table], timeout=TIMEOUT, what="iptables-save")
    if rc != 0:
        raise CNIError(Code.KERNEL_REFUSED, "iptables-save failed", err.decode(errors="replace").strip()[:500])
    return out.decode()


def iptables_restore(version: int, text: str, what: str) -> None:
    """Apply commands (`-A ...`, `-D ...`, `-N ...`) to a table as one transaction, flushing nothing else."""
    binary = tool("iptables-restore" if version == 4 else "ip6tables-restore")
    if binary is None:
        raise CNIError(Code.INVALID_CONFIG, f"{what}: iptables is not installed", "install iptables, or choose ipMasqBackend nftables")
    rc, out, err = _proc().run([binary, "--noflush", "-w", "10"], text.encode(), TIMEOUT, what=what)
    if rc != 0:
        raise CNIError(Code.KERNEL_REFUSED, f"{what} failed", err.decode(errors="replace").strip()[:500])


def nft_table_rules(family: str, table: str) -> list[dict] | None:
    """Every rule of a table (each with its chain, handle and comment) as nft's JSON objects; None if the table
    does not exist or nft is not installed."""
    binary = tool("nft")
    if binary is None:
        return None
    rc, out, err = _proc().run([binary, "-j", "list", "table", family, table], timeout=TIMEOUT, what="nft list")
    if rc != 0:
        if b"No such file or directory" in err or b"does not exist" in err:
            return None
        raise CNIError(Code.KERNEL_REFUSED, f"listing nftables table {family} {table} failed", err.decode(errors="replace").strip()[:500])
    return [item["rule"] for item in startup.loads(out.decode()).get("nftables", []) if "rule" in item]
