"""PID 1 of a test node: set up its private mounts, say so, then reap orphans until killed.

Run by node.Node as `nsenter --net=NODE unshare --mount --pid --fork --kill-child --mount-proc
python nsinit.py SPEC`, so it starts in the node's network namespace, a fresh mount namespace
(every mount private: nothing propagates back to the machine) and a fresh PID namespace whose
init it is.  containerd, its shims and the containers' processes all live in that PID namespace:
killing this process (by its PID) ends every one of them, and the mount namespace, its overlays
and the pods' netns mounts go with them.

SPEC is JSON: {"work": DIR, "overlays": [path...], "binds": [[source, target]...],
"empty": [path...], "keep": [path...], "ready": FILE}.  Overlays keep the lower directory
visible and put every write in DIR/ov/<n>/upper; binds replace a directory (created inside an
overlay when missing); "empty" hides a directory under an empty read-only tmpfs; "keep" are
directories a bind would hide (the plugins under test in a checkout under /tmp, which the node's
own /tmp replaces): bound back at the same path.
"""
import json
import os
import subprocess
import sys
import time


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def main() -> None:
    spec = json.loads(sys.argv[1])
    work = spec["work"]
    # /sys of the node's netns (as `ip netns exec` does: /sys/class/net lists the node's links),
    # with the machine's cgroup tree moved back in for runc
    cgroups = os.path.join(work, "cg")
    os.makedirs(cgroups, exist_ok=True)
    mount("--rbind", "/sys/fs/cgroup", cgroups)
    mount("-t", "sysfs", "cnitsys", "/sys")
    mount("--move", cgroups, "/sys/fs/cgroup")
    for n, lower in enumerate(spec["overlays"]):
        upper, scratch = os.path.join(work, "ov", str(n), "upper"), os.path.join(work, "ov", str(n), "work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(scratch, exist_ok=True)
        mount("-t", "overlay", "cnitov", "-o", f"lowerdir={lower},upperdir={upper},workdir={scratch}", lower)
    staged = []
    for n, path in enumerate(spec.get("keep", [])):  # seen before the binds hide them
        stage = os.path.join(work, "keep", str(n))
        os.makedirs(stage, exist_ok=True)
        mount("--bind", path, stage)
        staged.append((stage, path))
    for source, target in spec["binds"]:
        os.makedirs(target, exist_ok=True)  # only ever inside an overlay (node.py checks)
        mount("--bind", source, target)
    for stage, path in staged:
        os.makedirs(path, exist_ok=True)  # inside the node's own /tmp
        mount("--bind", stage, path)
    for path in spec["empty"]:
        mount("-t", "tmpfs", "-o", "ro,size=16k,mode=755", "cnitempty", path)
    with open(spec["ready"], "w") as f:
        f.write(str(os.getpid()))
    while True:  # an init reaps: orphaned shims and container processes are re-parented to it
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.2)


if __name__ == "__main__":
    main()
