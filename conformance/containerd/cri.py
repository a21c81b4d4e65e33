"""A small CRI client: cri.proto (our subset of runtime.v1) compiled with grpcio-tools at run time.

compile() writes the generated modules into a temporary directory (nothing generated is kept
in the tree) and imports them; RuntimeClient calls /runtime.v1.RuntimeService/<RPC> over
containerd's unix socket.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass

PROTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cri.proto")
_compiled = None


def compile_proto():
    """(messages module, grpc module) for cri.proto, compiled once per process."""
    global _compiled
    if _compiled is None:
        import grpc_tools
        from grpc_tools import protoc

        out = tempfile.mkdtemp(prefix="cnitcri")
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        rc = protoc.main(["protoc", f"-I{os.path.dirname(PROTO)}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", PROTO])
        if rc != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {PROTO}: exit {rc}")
        # cri_pb2_grpc imports cri_pb2 by its top-level name
        sys.path.insert(0, out)
        try:
            pb2 = _load("cri_pb2", os.path.join(out, "cri_pb2.py"))
            grpc_mod = _load("cri_pb2_grpc", os.path.join(out, "cri_pb2_grpc.py"))
        finally:
            sys.path.remove(out)
        _compiled = (pb2, grpc_mod)
    return _compiled


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Sandbox:
    """What PodSandboxStatus reports about one pod."""

    id: str
    ready: bool
    ip: str
    additional_ips: tuple[str, ...]
    netns: str  # the network namespace path in containerd's mount namespace ('' when it has none)
    info: dict


class RuntimeClient:
    """The RuntimeService RPCs the tests use; every call has a deadline."""

    def __init__(self, socket: str, timeout: float = 120):
        import grpc

        self.pb, grpc_mod = compile_proto()
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.stub = grpc_mod.RuntimeServiceStub(self.channel)
        self.timeout = timeout

    def close(self) -> None:
        self.channel.close()

    def version(self):
        return self.stub.Version(self.pb.VersionRequest(version="v1"), timeout=self.timeout)

    def run_pod(self, name: str, uid: str, namespace: str = "cnit", port_mappings=(), log_directory: str = "") -> str:
        """RunPodSandbox; port_mappings are (host_port, container_port) TCP pairs."""
        pb = self.pb
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            hostname=name,
            log_directory=log_directory,
            port_mappings=[pb.PortMapping(protocol=pb.TCP, container_port=c, host_port=h) for h, c in port_mappings],
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))),
        )
        return self.stub.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=self.timeout).pod_sandbox_id

    def status(self, sandbox_id: str) -> Sandbox:
        reply = self.stub.PodSandboxStatus(self.pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True), timeout=self.timeout)
        info = json.loads(reply.info["info"]) if "info" in reply.info else {}
        namespaces = info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
        netns = next((n.get("path", "") for n in namespaces if n.get("type") == "network"), "")
        status = reply.status
        return Sandbox(id=status.id, ready=status.state == self.pb.SANDBOX_READY, ip=status.network.ip,
                       additional_ips=tuple(p.ip for p in status.network.additional_ips), netns=netns, info=info)

    def stop_pod(self, sandbox_id: str) -> None:
        self.stub.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def remove_pod(self, sandbox_id: str) -> None:
        self.stub.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=self.timeout)

    def list_pods(self) -> list[str]:
        reply = self.stub.ListPodSandbox(self.pb.ListPodSandboxRequest(), timeout=self.timeout)
        return [item.id for item in reply.items]
