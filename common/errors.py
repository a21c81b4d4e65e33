"""The one error type of the suite, and the CNI error codes.

Codes 0-99 are the spec's; 100 and above are ours and are documented in the
README ("Error codes").  999 is reserved for real bugs: anything that is not a
CNIError reaches the protocol layer and becomes 999.
"""


class Code:
    # well-known codes from the CNI spec
    INCOMPATIBLE_VERSION = 1
    UNSUPPORTED_FIELD = 2
    UNKNOWN_CONTAINER = 3
    INVALID_ENV = 4
    IO_FAILURE = 5
    DECODING_FAILURE = 6
    INVALID_CONFIG = 7
    TRY_AGAIN_LATER = 11
    NOT_AVAILABLE = 50
    LIMITED_CONNECTIVITY = 51
    # plugin-specific codes (README, "Error codes")
    RANGE_EXHAUSTED = 100
    REQUESTED_IP_UNAVAILABLE = 101
    DUPLICATE_ALLOCATION = 102
    CONFLICTING_HOST_OBJECT = 103
    KERNEL_REFUSED = 104
    UNSAFE_STATE_DIR = 105
    DELEGATE_FAILED = 106
    CHECK_MISMATCH = 107
    INTERNAL = 999


class CNIError(Exception):
    """A known failure, reported to the runtime as the CNI error structure."""

    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def to_wire(self, cni_version: str) -> dict:
        return {
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
            "details": self.details,
        }

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


# errno -> code, for refusals that reach the protocol layer unmapped (README, "Error codes")
_IO_ERRNOS = {5, 28, 30, 122, 24, 23, 12}  # EIO, ENOSPC, EROFS, EDQUOT, EMFILE, ENFILE, ENOMEM
_GONE_ERRNOS = {2, 19, 3}  # ENOENT, ENODEV, ESRCH: something vanished under us (a concurrent DEL, a dying pod)
_BUSY_ERRNOS = {11, 16, 4}  # EAGAIN, EBUSY, EINTR


def from_os_error(err: OSError, what: str = "") -> CNIError:
    """The one mapping of kernel and OS refusals to codes: 999 stays for bugs."""
    text = err.strerror or str(err)
    msg = what or (str(err) if err.strerror is None else f"the operating system refused: {text}")
    if err.errno in _IO_ERRNOS:
        return CNIError(Code.IO_FAILURE, msg, text)
    if err.errno in _GONE_ERRNOS or err.errno in _BUSY_ERRNOS:
        return CNIError(Code.TRY_AGAIN_LATER, msg, f"{text}; an object this call used changed meanwhile, retry")
    return CNIError(Code.KERNEL_REFUSED, msg, text)


def step(errors: list[CNIError], what: str, fn, *args):
    """Run one clean-up step of DEL or GC: a failure is noted and the remaining steps still run."""
    try:
        return fn(*args)
    except CNIError as err:
        errors.append(CNIError(err.code, f"{what}: {err.msg}", err.details))
    except OSError as err:  # the kernel or a tool
        mapped = from_os_error(err)
        errors.append(CNIError(mapped.code, f"{what}: {err.strerror or err}", ""))
    return None


def incomplete(command: str, errors: list[CNIError]) -> CNIError:
    """The first failure's code (a lock timeout stays 11, a config error 7), every failure in the details."""
    first = errors[0]
    return CNIError(first.code, f"{command} incomplete: {first.msg}", "; ".join(str(e) for e in errors))
