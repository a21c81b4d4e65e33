"""Text made safe for a terminal: every string cni-suite prints as text goes through safe().

What status, gc and doctor print comes from files and programs cni-suite does
not control: allocation records, attachment records, conf files and their
names, etcd leases, firewall rule comments, error messages quoting any of
these.  Printed raw, an escape sequence in a container ID can rewrite the
terminal's title, move the cursor over earlier lines or hide text; a newline
can forge a line of the report; a bidi override (U+202E) or zero-width
character makes one name look like another.  So each such character is shown
as an escape instead: C0 and C1 controls and DEL as \\xNN, invisible format
characters (Unicode category Cf) and line/paragraph separators as \\uNNNN, and
undecodable bytes (surrogate escapes of file names) as the \\xNN they were.

Backslashes are left alone, so ordinary text reads as it is; a literal "\\x1b"
in a name is then indistinguishable from an escaped ESC, which is harmless.
JSON output needs none of this: json.dumps escapes controls and, with its
default ensure_ascii, every non-ASCII character.
"""

import unicodedata

# Cc: C0, DEL, C1.  Cf: bidi controls, zero-width characters, BOM.  Cs: lone surrogates,
# which is how Python decodes the undecodable bytes of file names (0x80..0xff -> U+DC80..U+DCFF).
# Zl/Zp: U+2028/U+2029, which some terminals and viewers treat as line breaks.
_UNSAFE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))


def _escape(ch: str) -> str:
    cp = ord(ch)
    if 0xDC80 <= cp <= 0xDCFF:  # a surrogate escape: the raw byte it stands for (0x9b is the 8-bit CSI)
        return f"\\x{cp - 0xDC00:02x}"
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def safe(value) -> str:
    """str(value) with every control, invisible formatting and separator character escaped (newlines too)."""
    text = value if type(value) is str else str(value)
    if text.isprintable():  # no Cc/Cf/Cs/Z* except " ": the common case, one C-level scan
        return text
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNSAFE else ch for ch in text)


def safe_lines(text: str) -> str:
    """Like safe(), but keeps the newlines: for text whose lines we laid out ourselves."""
    return "\n".join(safe(line) for line in text.split("\n"))


def safe_tree(value):
    """A JSON-like value with every string in it (keys too) passed through safe()."""
    if type(value) is str:
        return safe(value)
    if isinstance(value, dict):
        return {safe_tree(k): safe_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [safe_tree(v) for v in value]
    return value
