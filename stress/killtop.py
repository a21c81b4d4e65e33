"""N SIGKILLs of the top process (the single-file binary) at random moments during a bridge ADD.

What a runtime's timeout does: kill the process it started, then DEL.  After
each kill: no process of that call may outlive it (ORPHAN_GRACE), and the DEL
must succeed and leave nothing of that container (address, record, veth,
masquerade rule).  At the end: no process of the run, nothing left on the
node, and no `_MEI*` directory once the next start's sweep has run (with
`real_minute`, after really waiting the sweep's minute; else the leftovers'
times are set back by two minutes, as if it had passed).

The built binary runs in place from its cache (docs/build.md).  Every call
runs in a private mount namespace whose /var/lib is the run's own, and before
one ADD in COLD_EVERY a worker deletes the whole cache, between calls (as
`cni-multi --prune-cache` would: it waits for running calls), so that kills
also land while starts populate it, several at once.  At the end the cache
holds one complete build and no partial copy.

    python -m stress.killtop [--kills 1000] [--workers 8] [--real-minute] [--report PATH]
"""
import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from common import bincache
from conformance.netenv import Netns
from stress import procs
from stress.harness import default_bin_dir, is_elf

ORPHAN_GRACE = 5.0
COLD_EVERY = 10  # one ADD in this many starts with no cache
CALL_VAR = "CNIT_KILLTOP_CALL"  # beside the run's marker: which call a survivor belongs to
SUBNET = "10.189.0.0/24"


class KillTop:
    def __init__(self, kills: int, workers: int, real_minute: bool, bin_dir: str = "", seed: int | None = None):
        self.kills, self.workers, self.real_minute = kills, workers, real_minute
        self.source = os.path.abspath(bin_dir or default_bin_dir()[0])
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:10]
        self.lock = threading.Lock()
        self.killed = self.finished_first = self.dels = 0
        self.violations: list[str] = []
        self.orphans = 0
        self.mei_left = self.mei_after_sweep = 0
        self.cold_starts = self.killed_populating = 0
        self.calls = threading.Condition()
        self.in_flight, self.wiping = 0, False
        self.add_median = 0.0
        self.seq = 0

    # --- set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.root = tempfile.mkdtemp(prefix="cnit-killtop-")
        self.tmp = os.path.join(self.root, "tmp")
        os.mkdir(self.tmp, 0o700)
        self.bin = os.path.join(self.root, "bin")
        shutil.copytree(self.source, self.bin, symlinks=True)
        self.frozen = is_elf(os.path.join(self.source, "bridge"))
        self.varlib = os.path.join(self.root, "varlib")  # /var/lib of every call (the run-in-place cache's parent)
        os.mkdir(self.varlib, 0o755)
        self.cache = os.path.join(self.varlib, os.path.basename(bincache.ROOT))
        self.node = Netns("kt")
        self.pods = [Netns("kc") for _ in range(self.workers)]
        self.conf = {"cniVersion": "1.0.0", "name": "killtop", "type": "bridge", "bridge": "cnitkt0", "isGateway": True, "ipMasq": True,
                     "dataDir": os.path.join(self.root, "bridge"),
                     "ipam": {"type": "host-local", "subnet": SUBNET, "dataDir": os.path.join(self.root, "ipam")}}

    def teardown(self) -> None:
        for pid in procs.with_marker(self.run_id):
            os.kill(pid, signal.SIGKILL)  # ours by the run marker in its environment
        for ns in self.pods:
            ns.close()
        self.node.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self, command: str, cid: str, netns: str) -> dict:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
                "CNI_IFNAME": "eth0", "CNI_PATH": self.bin, "TMPDIR": self.tmp, procs.MARKER_VAR: self.run_id, CALL_VAR: cid}

    def start(self, command: str, cid: str, netns: str, fallback: bool = False) -> subprocess.Popen:
        argv = ["ip", "netns", "exec", self.node.name, os.path.join(self.bin, "bridge")]
        if self.frozen:  # unshare, sh and ip exec in turn: the pid killed is the plugin's
            mount = f"mount --bind {self.varlib} /var/lib"
            if fallback:  # a cache root writable by others is refused: the per-start path
                mount = f"mount -t tmpfs -o mode=0777,size=1m cni-fallback {bincache.ROOT}"
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mount} && exec "$@"', "sh", *argv]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(command, cid, netns))
        p.stdin.write(json.dumps(self.conf).encode())
        p.stdin.close()
        p.stdin = None
        return p

    # --- one kill -------------------------------------------------------------------------------

    def calibrate(self) -> None:
        times = []
        for i in range(5):
            cid = f"cal{i}"
            start = time.monotonic()
            p = self.start("ADD", cid, self.pods[0].path)
            out, err = p.communicate(timeout=60)
            times.append(time.monotonic() - start)
            if p.returncode != 0:
                raise RuntimeError(f"calibration ADD failed: {out!r} {err[-300:]!r}")
            self.delete(cid, self.pods[0].path)
        self.add_median = statistics.median(times)

    def delete(self, cid: str, netns: str) -> None:
        p = self.start("DEL", cid, netns)
        out, err = p.communicate(timeout=60)
        with self.lock:
            self.dels += 1
        if p.returncode != 0:
            self.violation(f"DEL {cid} after the kill failed: {out[:300]!r} {err[-300:]!r}")
        left = self.remains(cid)
        if left:
            self.violation(f"DEL {cid} after the kill left {left}")

    def one(self, pod: Netns) -> bool:
        """ADD killed after a random delay; False if the ADD finished first (not a kill)."""
        with self.lock:
            self.seq += 1
            cid = f"kt{self.seq}"
            delay = self.rng.uniform(0, self.add_median * 1.1)
            cold = self.frozen and self.rng.randrange(COLD_EVERY) == 0
            if cold:
                self.cold_starts += 1
                delay = self.rng.uniform(0, self.add_median * 0.5)  # the population comes first, before Python
        if cold:
            with self.calls:
                self.wiping = True
                self.calls.wait_for(lambda: self.in_flight == 0)
                shutil.rmtree(self.cache, ignore_errors=True)
                self.wiping = False
                self.calls.notify_all()
        with self.call():
            return self._one(pod, cid, delay)

    @contextlib.contextmanager
    def call(self):
        """One ADD and its DEL; a cache wipe waits for the calls in flight, and new ones wait for it."""
        with self.calls:
            self.calls.wait_for(lambda: not self.wiping)
            self.in_flight += 1
        try:
            yield
        finally:
            with self.calls:
                self.in_flight -= 1
                self.calls.notify_all()

    def _one(self, pod: Netns, cid: str, delay: float) -> bool:
        p = self.start("ADD", cid, pod.path)
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)  # the top process only, as a runtime's timeout does
        p.wait()
        p.communicate()
        killed = p.returncode == -signal.SIGKILL
        if killed:
            self.wait_gone(cid)
            if self.frozen and any(n.startswith(bincache.TMP_PREFIX) and n.endswith(f"-{p.pid}") for n in self.cached()):
                with self.lock:
                    self.killed_populating += 1
        self.delete(cid, pod.path)
        return killed

    def of_call(self, cid: str) -> list[int]:
        needle = f"{CALL_VAR}={cid}".encode()
        out = []
        for pid in procs.with_marker(self.run_id):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        out.append(pid)
            except OSError:
                continue
        return out

    def wait_gone(self, cid: str) -> None:
        deadline = time.monotonic() + ORPHAN_GRACE
        left = self.of_call(cid)
        while left and time.monotonic() < deadline:
            time.sleep(0.01)
            left = self.of_call(cid)
        for pid in left:
            stuck = " (stuck before Python)" if procs.stuck_before_python(pid) else ""
            self.violation(f"orphan{stuck}: pid {pid} ({procs.cmdline(pid)[:80]}) of killed ADD {cid}, {procs.status(pid)}")
            with self.lock:
                self.orphans += 1
            os.kill(pid, signal.SIGKILL)

    def cached(self) -> list[str]:
        try:
            return os.listdir(self.cache)
        except OSError:
            return []

    def remains(self, cid: str) -> list[str]:
        found = []
        ipam = os.path.join(self.root, "ipam", "killtop")
        for name in os.listdir(ipam) if os.path.isdir(ipam) else []:
            if name[0].isdigit():
                with open(os.path.join(ipam, name)) as f:
                    if f.read().split("\n")[0].strip() == cid:
                        found.append(f"address {name}")
        if os.path.exists(os.path.join(self.root, "bridge", "killtop", f"{cid}:eth0.json")):
            found.append("attachment record")
        if f'id: {cid}"' in self.node.exec("nft", "list", "ruleset", check=False):
            found.append("masquerade rule")
        return found

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)

    # --- the run --------------------------------------------------------------------------------

    def worker(self, pod: Netns) -> None:
        while True:
            with self.lock:
                if self.killed >= self.kills:
                    return
            hit = self.one(pod)
            with self.lock:
                if hit:
                    self.killed += 1
                else:
                    self.finished_first += 1

    def run(self) -> dict:
        start = time.monotonic()
        self.setup()
        try:
            self.calibrate()
            threads = [threading.Thread(target=self.worker, args=(pod,)) for pod in self.pods]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.final_checks()
        finally:
            self.teardown()
        return {"kills": self.killed, "adds_finished_before_the_kill": self.finished_first, "dels": self.dels, "orphans": self.orphans,
                "mei_left_by_kills": self.mei_left, "mei_after_sweep": self.mei_after_sweep, "cold_starts": self.cold_starts,
                "killed_while_populating": self.killed_populating,
                "violations": self.violations,
                "add_median_ms": round(1000 * self.add_median, 1), "workers": self.workers, "real_minute": self.real_minute,
                "seconds": round(time.monotonic() - start), "frozen": is_elf(os.path.join(self.source, "bridge"))}

    def final_checks(self) -> None:
        if procs.with_marker(self.run_id):
            self.violation(f"processes of the run still alive: {procs.with_marker(self.run_id)}")
        veths = [line for line in self.node.ip("-o", "link", "show", "type", "veth").splitlines() if line.strip()]
        if veths:
            self.violation(f"veths left on the node: {veths}")
        ipam = os.path.join(self.root, "ipam", "killtop")
        held = [n for n in os.listdir(ipam) if n[0].isdigit()] if os.path.isdir(ipam) else []
        if held:
            self.violation(f"addresses left: {held}")
        records = os.listdir(os.path.join(self.root, "bridge", "killtop"))
        if [r for r in records if r.endswith(".json")]:
            self.violation(f"attachment records left: {records}")
        if "killtop" in self.node.exec("nft", "list", "ruleset", check=False).replace("cnitkt0", ""):
            self.violation("masquerade rules left")
        mei = [n for n in os.listdir(self.tmp) if n.startswith("_MEI")]
        self.mei_left = len(mei)
        if mei:
            if self.real_minute:
                newest = max(os.stat(os.path.join(self.tmp, n)).st_mtime for n in mei)
                time.sleep(max(0.0, newest + 62 - time.time()))
            else:
                old = time.time() - 120
                for name in mei:
                    os.utime(os.path.join(self.tmp, name), (old, old))
            p = self.start("VERSION", "sweep", "", fallback=True)  # _MEI directories are swept by per-start runs
            p.communicate(timeout=60)
            still = [n for n in os.listdir(self.tmp) if n.startswith("_MEI")]
            self.mei_after_sweep = len(still)
            if still:
                self.violation(f"_MEI directories surviving the sweep: {still}")
        if self.frozen:
            p = self.start("VERSION", "sweep", "")  # a warm start sweeps what killed first starts left
            p.communicate(timeout=60)
            cached = sorted(self.cached())
            if len(cached) != 1 or not os.path.isfile(os.path.join(self.cache, cached[0], ".cni-multi-build")):
                self.violation(f"the cache should hold one complete build, not {cached}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stress.killtop", description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--real-minute", action="store_true", help="wait the sweep's real minute instead of ageing the leftovers")
    ap.add_argument("--bin-dir", default="")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--report", default="", help="write the figures here as JSON")
    opts = ap.parse_args(argv)
    result = KillTop(opts.kills, opts.workers, opts.real_minute, opts.bin_dir, opts.seed).run()
    text = json.dumps(result, indent=2)
    print(text)
    if opts.report:
        with open(opts.report, "w") as f:
            f.write(text + "\n")
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
