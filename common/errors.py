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
