"""host-local allocating and releasing addresses for a few containers (dual-stack)."""
import json
import os
import shutil
import tempfile

from conformance.netenv import Netns, run_plugin

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, "dist", "src-bin", "host-local")


def main() -> None:
    data_dir = tempfile.mkdtemp(prefix="cni-demo-")
    conf = {"cniVersion": "1.1.0", "name": "demo", "ipam": {"type": "host-local", "dataDir": data_dir,
            "ranges": [[{"subnet": "198.18.10.0/29"}], [{"subnet": "2001:db8:d::/120"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}
    containers = [f"demo-{i}" for i in range(1, 6)]
    with Netns("demo") as ns:
        try:
            print(f"host-local on {conf['ipam']['ranges']}, state in {data_dir}\n")
            for cid in containers:
                out = run_plugin(BIN, "ADD", conf, netns=ns.path, container_id=cid)
                got = " ".join(ip["address"] for ip in out.json["ips"]) if out.ok else f"error {out.json['code']}: {out.json['msg']}"
                print(f"ADD {cid:8} -> {got}")
            print(f"\nrecords: {sorted(f for f in os.listdir(os.path.join(data_dir, 'demo')) if f[0].isdigit())}")
            for cid in containers[:2]:
                run_plugin(BIN, "DEL", conf, netns=ns.path, container_id=cid)
                print(f"DEL {cid}")
            out = run_plugin(BIN, "ADD", conf, netns=ns.path, container_id="demo-6")
            print(f"ADD demo-6   -> {' '.join(ip['address'] for ip in out.json['ips'])}  (round-robin: freed addresses wait their turn)")
            gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "demo-6", "ifname": "eth0"}]})
            run_plugin(BIN, "GC", gc)
            print(f"GC keeping only demo-6 -> records: {sorted(f for f in os.listdir(os.path.join(data_dir, 'demo')) if f[0].isdigit())}")
            print(json.dumps(out.json, indent=2))
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
