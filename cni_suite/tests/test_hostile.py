"""cni-suite against a hostile node: special files where conf files belong, and state whose
contents are terminal escape sequences.

Every run of the CLI has a timeout: a regression that blocks on a FIFO fails here instead
of hanging the suite.  Output is checked for raw characters a terminal would act on.
"""

import json
import os
import pty
import select
import subprocess
import sys
import tty
import unicodedata

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 30  # seconds; a healthy run takes well under 2

# what a terminal would act on or hide: OSC (title), CSI (clear screen, conceal), C1 CSI,
# bidi override, zero-width space, BOM, DEL, backspace, carriage return, a newline forging a line
EVIL_CID = "pod\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\u200b\ufeff\x7f\x08\rX\nforged line"
EVIL_IFNAME = "eth\x1b[8m0"
UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def unsafe(text: str, keep: str = "\n") -> list[str]:
    """The characters of text a terminal would interpret or hide (our own newlines excepted)."""
    return sorted({ch for ch in text if ch not in keep and unicodedata.category(ch) in UNSAFE_CATEGORIES})


def decode(data: bytes) -> str:
    # a raw C1 byte that is not valid UTF-8 shows up as a surrogate escape, which unsafe() catches
    return data.decode("utf-8", "surrogateescape")


def run(node, bin_dir: str, *args: str, conf_dir, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """cni-suite in the node namespace, with a deadline: (exit code, stdout, stderr)."""
    if args[:1] == ("doctor",):  # where the runtime finds the plugins: here, beside this cni-suite
        args = (*args, "--bin-dir", bin_dir)
    argv = ["ip", "netns", "exec", node.name, os.path.join(bin_dir, "cni-suite"), "--conf-dir", str(conf_dir), *args]
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run has killed it
        pytest.fail(f"cni-suite {' '.join(args)} hung for {timeout}s")
    return proc.returncode, decode(proc.stdout), decode(proc.stderr)


def run_on_tty(node, bin_dir: str, *args: str, conf_dir) -> str:
    """stdout as a terminal gets it: click strips CSI sequences only when stdout is not a tty."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # no \n -> \r\n: what the program wrote, byte for byte
    argv = ["ip", "netns", "exec", node.name, os.path.join(bin_dir, "cni-suite"), "--conf-dir", str(conf_dir), *args]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    try:
        while True:
            if not select.select([master], [], [], TIMEOUT)[0]:
                proc.kill()
                pytest.fail(f"cni-suite {' '.join(args)} hung for {TIMEOUT}s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
    finally:
        proc.wait(timeout=TIMEOUT)
        os.close(master)
    return decode(b"".join(chunks))


def host_local_net(conf_dir, tmp_path, name: str = "hostile", subnet: str = "10.99.0.0/24", filename: str = "10-hostile.conflist"):
    conf_dir.mkdir(exist_ok=True)
    ipam_dir = tmp_path / "ipam"
    plugin = {"type": "host-local", "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": str(ipam_dir)}}
    (conf_dir / filename).write_text(json.dumps({"cniVersion": "1.1.0", "name": name, "plugins": [plugin]}))
    state = ipam_dir / name
    state.mkdir(parents=True, mode=0o700, exist_ok=True)
    return state


def bridge_net(tmp_path):
    """A conf dir with a bridge network "brnet"; (conf dir, its attachment records' directory)."""
    conf = tmp_path / "net.d"
    conf.mkdir()
    bridge_dir = tmp_path / "bridge"
    plugin = {
        "type": "bridge",
        "bridge": "cnihost0",
        "dataDir": str(bridge_dir),
        "ipam": {"type": "host-local", "subnet": "10.99.2.0/24", "dataDir": str(tmp_path / "ipam")},
    }
    (conf / "10-br.conflist").write_text(json.dumps({"cniVersion": "1.1.0", "name": "brnet", "plugins": [plugin]}))
    (bridge_dir / "brnet").mkdir(parents=True, mode=0o700)
    return conf, bridge_dir / "brnet"


def plant_allocation(state, ip: str, cid: str, ifname: str, boot: str = "") -> None:
    """A host-local record as the store writes it; with boot, the owner index of that boot."""
    (state / ip).write_bytes(f"{cid}\r\n{ifname}".encode())
    os.chmod(state / ip, 0o600)
    if boot:
        os.link(state / ip, state / f".alloc.{'ab' * 8}.{boot}.{ip}")


# --- the sanitiser and the text builders, in-process -------------------------------------


@pytest.mark.unit
def test_safe_escapes_every_control_and_invisible_character():
    from cni_suite.text import safe, safe_lines

    dangerous = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
    dangerous += [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) in ("Cf", "Zl", "Zp")]
    dangerous += [chr(c) for c in range(0xDC80, 0xDD00)]  # undecodable bytes of file names
    for ch in dangerous:
        out = safe(f"a{ch}b")
        assert not unsafe(out, keep="") and out != f"a{ch}b", repr(ch)
        assert safe(out) == out  # idempotent: a second pass changes nothing
    assert safe("\x1b") == "\\x1b" and safe("\x9b") == "\\x9b" and safe("\n") == "\\x0a"
    assert safe("\u202e") == "\\u202e" and safe("\u200b") == "\\u200b" and safe("\ufeff") == "\\ufeff"
    assert safe("\udc9b") == "\\x9b"  # the raw byte a surrogate escape stands for
    printable = "pod-a_1.2 10.0.0.1/24 fe80::1 é 中 \\x41 ~"
    assert safe(printable) == printable
    assert safe_lines("a\x1b\nb") == "a\\x1b\nb"
    assert safe(7) == "7"


@pytest.mark.unit
def test_status_text_escapes_every_field():
    from cni_suite.cli import _text

    e = EVIL_CID
    report = {
        "network": e,
        "plugin": e,
        "source": e,
        "problem": e,
        "ranges": [{"rangeSet": 0, "ranges": e, "capacity": 1, "used": 1, "free": 0}],
        "allocations": [{"ip": e, "containerID": e, "ifname": e, "ageSeconds": 1, "boot": e}],
        "attachments": [{"containerID": e, "ifname": e, "hostVeth": e, "vethPresent": False, "netns": e, "netnsExists": False}],
        "masquerade": {"nftables": [e], "ipv4": [e], "ipv6": [e]},
        "vxlan": {"device": {"name": e, "state": e}, "store": e, "peers": [{"node": e, "subnet": e, "vtep": e, "programmed": {e: True}}]},
    }
    text = _text(report)
    assert not unsafe(text), text
    assert len(text.split("\n")) == 8  # one line per item: no line forged by a newline in a field
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil\\u200b\\ufeff\\x7f\\x08\\x0dX\\x0aforged line" in text


@pytest.mark.unit
def test_doctor_text_and_log_lines_are_escaped():
    import logging

    from cni_suite.cli import SafeFormatter, _finding_text
    from cni_suite.doctor import Finding

    text = _finding_text(Finding(EVIL_CID, EVIL_CID, EVIL_CID, EVIL_CID))
    assert not unsafe(text) and len(text.split("\n")) == 2
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "releasing %s/%s", (EVIL_CID, EVIL_IFNAME), None)
    line = SafeFormatter("cni-suite %(levelname)s %(message)s").format(record)
    assert not unsafe(line, keep="") and "\\x1b]0;pwned" in line and "eth\\x1b[8m0" in line


@pytest.mark.unit
def test_inventory_reads_no_special_file(tmp_path):
    """FIFOs (directly or through a link), devices, loops, directories and huge files are
    reported as unreadable networks, without blocking; a bad network name is a problem too."""
    conf = tmp_path / "net.d"
    conf.mkdir()
    os.mkfifo(conf / "10-fifo.conflist")
    os.mkfifo(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", conf / "11-link-to-fifo.conf")
    os.symlink("/dev/null", conf / "12-device.conf")
    os.symlink("13-loop.conf", conf / "13-loop.conf")
    (conf / "14-dir.json").mkdir()
    with open(conf / "15-huge.conf", "wb") as f:
        f.truncate((4 << 20) + 1)  # sparse: one byte over what a plugin accepts on stdin
    (conf / "16-badname.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "../evil", "type": "host-local"}))
    (conf / "17-good.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "good", "type": "host-local"}))
    code = "import json, sys; from cni_suite import inventory; print(json.dumps([(n.name, n.problem) for n in inventory.networks(sys.argv[1])]))"
    try:
        out = subprocess.run([sys.executable, "-c", code, str(conf)], cwd=REPO, capture_output=True, timeout=TIMEOUT, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("inventory.networks blocked on a special file")
    got = dict(json.loads(out.stdout))
    assert "is a FIFO, not a regular file" in got["10-fifo.conflist"]
    assert "is a FIFO, not a regular file" in got["11-link-to-fifo.conf"]
    assert "is a character device, not a regular file" in got["12-device.conf"]
    assert "Too many levels of symbolic links" in got["13-loop.conf"]
    assert "is a directory, not a regular file" in got["14-dir.json"]
    assert f"is larger than {4 << 20} bytes" in got["15-huge.conf"]
    assert "invalid characters found in network name" in got["../evil"]
    assert got["good"] == ""


# --- the CLI, source and built binary, in a node namespace --------------------------------


@pytest.mark.root
def test_special_files_in_the_conf_dir_are_findings_not_hangs(node, bin_dir, tmp_path):
    conf = tmp_path / "net.d"
    host_local_net(conf, tmp_path)
    os.mkfifo(conf / "x.conflist")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "fifo", conf / "y.conf")
    os.symlink("z.json", conf / "z.json")
    odd = {"x.conflist": "is a FIFO", "y.conf": "is a FIFO", "z.json": "Too many levels of symbolic links"}

    rc, out, _ = run(node, bin_dir, "status", "--json", conf_dir=conf)
    assert rc == 0
    problems = {n["network"]: n.get("problem", "") for n in json.loads(out)["networks"]}
    assert problems.pop("hostile") == ""
    assert problems.keys() == odd.keys() and all(odd[k] in problems[k] for k in odd), problems
    rc, out, _ = run(node, bin_dir, "status", conf_dir=conf)
    assert rc == 0 and "network hostile (host-local" in out and out.count("PROBLEM: unreadable") == 3

    rc, out, _ = run(node, bin_dir, "doctor", "--json", conf_dir=conf)
    findings = json.loads(out)["findings"]
    assert rc == 1 and sorted((f["check"], f["network"]) for f in findings) == [("config", k) for k in sorted(odd)]
    rc, out, _ = run(node, bin_dir, "doctor", conf_dir=conf)
    assert rc == 1 and out.count("[config]") == 3

    # gc: the readable network is collected, the others are named as skipped (and the exit says so)
    rc, out, err = run(node, bin_dir, "gc", "--valid", "keep:eth0", "--cni-path", bin_dir, conf_dir=conf)
    assert rc == 1 and "hostile: released 0: -" in out and err.count("GC skipped") == 3, (out, err)


@pytest.mark.root
def test_a_fifo_as_the_ipam_lock_does_not_hang_status(node, bin_dir, tmp_path):
    state = host_local_net(tmp_path / "net.d", tmp_path)
    os.mkfifo(state / "lock")
    rc, out, _ = run(node, bin_dir, "status", "--json", conf_dir=tmp_path / "net.d", timeout=10)
    assert "not a regular file" in json.loads(out)["networks"][0]["problem"]


@pytest.mark.root
def test_a_fifo_as_an_attachment_lock_does_not_hang_gc(node, bin_dir, tmp_path):
    conf, records_dir = bridge_net(tmp_path)
    os.mkfifo(records_dir / "x.lock")  # GC removes lock files without a record: it opens this one
    rc, out, err = run(node, bin_dir, "gc", "--valid", "a:eth0", "--cni-path", bin_dir, conf_dir=conf, timeout=10)
    assert rc in (0, 1) and "Traceback" not in err, (out, err)  # finished, one way or the other


@pytest.fixture
def hostile_state(tmp_path):
    """A host-local network holding two addresses for containers whose IDs are escape sequences."""
    conf = tmp_path / "net.d"
    state = host_local_net(conf, tmp_path)
    plant_allocation(state, "10.99.0.5", EVIL_CID, EVIL_IFNAME)
    plant_allocation(state, "10.99.0.6", "\u202eaz\x1b]8;;http://x\x07", "eth0")
    return conf


@pytest.mark.root
def test_status_escapes_what_state_files_hold(node, bin_dir, hostile_state):
    rc, out, _ = run(node, bin_dir, "status", conf_dir=hostile_state)
    assert rc == 0 and not unsafe(out), out
    assert len(out.rstrip("\n").split("\n")) == 4  # network, range set, two allocations: nothing forged
    assert "pod\\x1b]0;pwned\\x07" in out and "eth\\x1b[8m0" in out and "\\u202eaz\\x1b]8;;" in out
    # a terminal gets the same: click strips CSI sequences from a pipe, not from a tty
    on_tty = run_on_tty(node, bin_dir, "status", conf_dir=hostile_state)
    assert not unsafe(on_tty) and "\\x1b[2J" in on_tty, on_tty
    # JSON escapes by itself and keeps the data exact
    rc, out, _ = run(node, bin_dir, "status", "--json", conf_dir=hostile_state)
    assert out.isascii() and not unsafe(out)
    held = {(a["containerID"], a["ifname"]) for a in json.loads(out)["networks"][0]["allocations"]}
    assert held == {(EVIL_CID, EVIL_IFNAME), ("\u202eaz\x1b]8;;http://x\x07", "eth0")}


@pytest.mark.root
def test_gc_escapes_what_it_released(node, bin_dir, hostile_state):
    rc, out, err = run(node, bin_dir, "gc", "--valid", "keep:eth0", "--cni-path", bin_dir, conf_dir=hostile_state)
    assert rc == 0 and not unsafe(out) and not unsafe(err), (out, err)
    assert "hostile: released 2: " in out and "pod\\x1b]0;pwned\\x07" in out and "\\x0aforged line/eth\\x1b[8m0" in out
    assert sorted(os.listdir(hostile_state.parent / "ipam" / "hostile")) == ["lock"]


@pytest.mark.root
def test_boot_sweep_escapes_its_output_and_its_log(node, bin_dir, tmp_path):
    conf = tmp_path / "net.d"
    state = host_local_net(conf, tmp_path)
    plant_allocation(state, "10.99.0.7", EVIL_CID, EVIL_IFNAME, boot="0" * 16)  # an earlier boot's
    rc, out, err = run(node, bin_dir, "gc", "--boot-sweep", "--cni-path", bin_dir, conf_dir=conf)
    assert rc == 0 and "boot sweep released 1: pod\\x1b]0;pwned" in out, (out, err)
    assert "releasing pod\\x1b]0;pwned" in err  # the log line (stderr is a terminal too)
    assert not unsafe(out) and not unsafe(err), (out, err)


@pytest.mark.root
def test_hostile_names_in_the_conf_dir_are_escaped(node, bin_dir, tmp_path):
    conf = tmp_path / "net.d"
    host_local_net(conf, tmp_path, name="okname", filename="10-\x1b]0;t\x07\u202e.conflist")
    host_local_net(conf, tmp_path, name="bad\x1b[31mname\u202e", subnet="10.99.1.0/24", filename="20-bad.conflist")
    os.mkfifo(conf / "30-\x1b[2Jfifo\u200b.conf")
    for args in (("status",), ("doctor",), ("gc", "--valid", "a:eth0", "--cni-path", bin_dir)):
        rc, out, err = run(node, bin_dir, *args, conf_dir=conf)
        assert not unsafe(out) and not unsafe(err), (args, out, err)
        assert "\\x1b[" in out + err, (args, out, err)
    findings = json.loads(run(node, bin_dir, "doctor", "--json", conf_dir=conf)[1])["findings"]
    assert sorted(f["network"] for f in findings) == ["30-\x1b[2Jfifo\u200b.conf", "bad\x1b[31mname\u202e"]
    assert "invalid characters found in network name" in {f["network"]: f["problem"] for f in findings}["bad\x1b[31mname\u202e"]


@pytest.mark.root
def test_a_planted_attachment_record_is_escaped_and_cannot_crash_status(node, bin_dir, tmp_path):
    """A record naming a veth the kernel refuses to look up (too long) used to crash status."""
    conf, records_dir = bridge_net(tmp_path)
    records = {
        (EVIL_CID, EVIL_IFNAME): {"host_veth": "veth\x1b[2Jx", "netns": "/run/netns/\u202eevil"},
        ("pod-long", "eth0"): {"host_veth": "a-name-longer-than-fifteen-bytes", "netns": ""},
    }
    for (cid, ifname), fields in records.items():
        doc = {"container_id": cid, "ifname": ifname, "mac": "", "boot": "", **fields}
        try:  # this version's record name; earlier versions read any *.json
            from common.attachment import key

            name = key(cid, ifname) + ".json"
        except ImportError:
            name = f"{cid}-{ifname}.json"
        (records_dir / name).write_text(json.dumps(doc))
    rc, out, err = run(node, bin_dir, "status", "--json", conf_dir=conf)
    assert rc == 0, err
    net = json.loads(out)["networks"][0]
    assert "problem" not in net and {a["hostVeth"] for a in net["attachments"]} == {"veth\x1b[2Jx", "a-name-longer-than-fifteen-bytes"}
    rc, out, err = run(node, bin_dir, "status", conf_dir=conf)
    assert rc == 0 and not unsafe(out) and not unsafe(err), (out, err)
    assert "veth veth\\x1b[2Jx (gone), netns /run/netns/\\u202eevil (gone)" in out
