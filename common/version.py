"""Spec versions.  Kept tiny: the VERSION command imports only this (and common.startup for JSON)."""

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"

# the first version that knows each command
COMMAND_MIN_VERSION = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}


def parse_version(text: str) -> tuple[int, int, int]:
    """Parse like the reference's version.ParseVersion: up to three numeric parts."""
    parts = text.split(".")
    if not text or len(parts) > 3:
        raise ValueError(f"invalid version {text!r}")
    nums = []
    for p in parts:
        if not p.isdigit() or not p.isascii():
            raise ValueError(f"invalid version {text!r}")
        nums.append(int(p))
    while len(nums) < 3:
        nums.append(0)
    return nums[0], nums[1], nums[2]


def respond(versions, stdin, stdout, max_stdin: int = 4 << 20) -> int:
    """The VERSION command: report `versions`, echoing the config's cniVersion.

    Answers whatever stdin holds (libcni sends only a cniVersion; a terminal,
    garbage or nothing gets the latest).  The multi-call binary calls this
    without importing the protocol layer (build/multicall.py).
    """
    from common import startup

    requested = LATEST
    try:
        isatty = stdin.isatty()
    except (AttributeError, ValueError):
        isatty = False
    if not isatty:
        try:
            data = stdin.read(max_stdin)
            if data.strip():
                requested = startup.loads(data.decode()).get("cniVersion") or LATEST
        except (OSError, ValueError, AttributeError, UnicodeError):
            pass
    if type(requested) is not str:
        requested = LATEST
    stdout.write(startup.dumps({"cniVersion": requested, "supportedVersions": list(versions)}, indent=4) + "\n")
    return 0
