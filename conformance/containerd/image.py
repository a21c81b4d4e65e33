"""A one-layer OCI image of busybox-static, written locally (no registry): an OCI layout in a tar.

The layer is an uncompressed tar with fixed mtimes, owners and order, so the digest is the same
on every run for the same busybox: /bin/busybox, its applets as symlinks, /etc/passwd,
/etc/group and /www/index.html.  The image's command serves /www on port 80 with busybox httpd
(the hostPort test fetches it) and otherwise sleeps: one image is both the CRI sandbox ("pause")
image and what `ctr run` starts.
"""
from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile

BUSYBOX = "/bin/busybox"
NAME = "localhost/cnitbox:1"
PAGE = b"cnit-containerd-pod\n"
CMD = ["/bin/sh", "-c", "httpd -p 80 -h /www; exec sleep 2147483647"]
MTIME = 1_600_000_000
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o644, kind: bytes = tarfile.REGTYPE,
         link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
    info.mode, info.type, info.linkname = mode, kind, link
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer() -> bytes:
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    applets = sorted(set(subprocess.run([BUSYBOX, "--list"], stdout=subprocess.PIPE, text=True, check=True).stdout.split()) - {"busybox"})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "www", "tmp", "proc", "sys", "dev", "root"):
            _add(tar, d + "/", mode=0o1777 if d == "tmp" else 0o755, kind=tarfile.DIRTYPE)
        _add(tar, "bin/busybox", data=busybox, mode=0o755)
        for applet in applets:
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(tar, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
        _add(tar, "www/index.html", data=PAGE)
    return buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def _json(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def oci_archive(path: str, name: str = NAME) -> str:
    """Write the image as an OCI layout tar at path (what `ctr images import` reads); return the manifest digest."""
    blobs: dict[str, bytes] = {}
    tar_layer = layer()
    layer_desc = _blob(blobs, tar_layer, "application/vnd.oci.image.layer.v1.tar")
    config = {
        "architecture": ARCH, "os": "linux", "created": "2020-09-13T12:26:40Z",
        "config": {"Cmd": CMD, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},  # uncompressed: the diff id is the blob's digest
    }
    config_desc = _blob(blobs, _json(config), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config_desc, "layers": [layer_desc]}
    manifest_desc = _blob(blobs, _json(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
    manifest_desc["platform"] = {"architecture": ARCH, "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [manifest_desc]}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as out:
        _add(out, "oci-layout", data=_json({"imageLayoutVersion": "1.0.0"}))
        _add(out, "index.json", data=_json(index))
        _add(out, "blobs/", kind=tarfile.DIRTYPE, mode=0o755)
        _add(out, "blobs/sha256/", kind=tarfile.DIRTYPE, mode=0o755)
        for digest, data in sorted(blobs.items()):
            _add(out, "blobs/sha256/" + digest.split(":", 1)[1], data=data)
    return manifest_desc["digest"]
