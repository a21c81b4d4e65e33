"""A small libcni: what a runtime does around the plugins (load, chain, cache, GC).

Standalone (stdlib only): the conformance suite and conformance.cnitool use it to
drive any plugin directory the way containerd, CRI-O, podman and cnitool do
through Go's libcni:

* network configurations are loaded by name from a directory: the first
  ``*.conflist`` (sorted) whose ``name`` matches, else a ``*.conf``/``*.json``
  single-plugin file, up-converted into a one-plugin list;
* each plugin gets its object with ``name`` and ``cniVersion`` injected,
  ``prevResult`` (the previous plugin's result on ADD, the cached final result
  on CHECK and DEL) and ``runtimeConfig`` for the capabilities it declares and
  the runtime supplies;
* ADD runs the list in order, CHECK in order, DEL in reverse; GC first DELs
  every cached attachment of the network that is not valid, then sends GC
  (1.1.0) to every plugin; STATUS (1.1.0) stops at the first failure;
* the final ADD result is cached as ``<cache>/results/<net>-<cid>-<ifname>``
  (kind ``cniCacheV1``, directory 0700, file 0600), read back as prevResult
  for CHECK and DEL (configs >= 0.4.0), and removed by a successful DEL.

Plugins run in this process's network namespace.  ``exec_prefix`` (e.g.
``["ip", "netns", "exec", NODE]``) runs them somewhere else.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import re
import subprocess
from dataclasses import dataclass, field

DEFAULT_CACHE_DIR = "/var/lib/cni"
CACHE_KIND = "cniCacheV1"
IMPLEMENTED_VERSION = "1.1.0"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$")


class CNIError(Exception):
    """A plugin (or this library) failed: code/msg/details as in the spec's error structure."""

    def __init__(self, msg: str, code: int | None = None, details: str = "", plugin: str = "", stderr: str = ""):
        super().__init__(msg)
        self.msg = msg
        self.code = code
        self.details = details
        self.plugin = plugin
        self.stderr = stderr

    def __str__(self) -> str:
        text = self.msg
        if self.details:
            text += f"; {self.details}"
        if self.code is not None:
            text = f"[code {self.code}] {text}"
        if self.plugin:
            text = f"plugin {self.plugin}: {text}"
        return text


def parse_version(version: str) -> tuple[int, int, int]:
    if version == "":
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise CNIError(f"invalid version {version!r}", 6)
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def version_at_least(version: str, other: str) -> bool:
    return parse_version(version) >= parse_version(other)


# --- configuration ------------------------------------------------------------


@dataclass
class NetworkConfigList:
    name: str
    cni_version: str
    plugins: list[dict]
    raw: bytes
    disable_check: bool = False
    disable_gc: bool = False

    @classmethod
    def from_bytes(cls, raw: bytes) -> "NetworkConfigList":
        doc = _parse_json(raw, "configuration list")
        if not isinstance(doc, dict):
            raise CNIError("error parsing configuration list: not a JSON object", 6)
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise CNIError("error parsing configuration list: no name", 7)
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise CNIError(f"error parsing configuration list: no plugins in list", 7)
        for plugin in plugins:
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str) or not plugin["type"]:
                raise CNIError("error parsing configuration list: a plugin has no type", 7)
        version = doc.get("cniVersion", "")
        if not isinstance(version, str):
            raise CNIError("error parsing configuration list: cniVersion is not a string", 7)
        versions = doc.get("cniVersions")
        if versions is not None:
            if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
                raise CNIError("error parsing configuration list: cniVersions is not a list of strings", 7)
            # the highest version of cniVersion + cniVersions that this library implements
            candidates = [v for v in versions + ([version] if version else []) if parse_version(v) <= parse_version(IMPLEMENTED_VERSION)]
            if candidates:
                version = max(candidates, key=parse_version)
        return cls(name=name, cni_version=version, plugins=plugins, raw=raw,
                   disable_check=_truthy(doc.get("disableCheck", False)), disable_gc=_truthy(doc.get("disableGC", False)))

    @classmethod
    def from_single(cls, raw: bytes) -> "NetworkConfigList":
        """Up-convert a single-plugin .conf (libcni ConfListFromConf)."""
        doc = _parse_json(raw, "configuration")
        if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
            raise CNIError("error parsing configuration: missing 'type'", 7)
        listed = {"name": doc.get("name", ""), "cniVersion": doc.get("cniVersion", ""), "plugins": [doc]}
        return cls.from_bytes(json.dumps(listed).encode())


def _parse_json(raw: bytes, what: str):
    """JSON from a configuration file; what it cannot decode is a code-6 error about `what`."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CNIError(f"error parsing {what}: {exc}", 6) from None


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def load_network(confdir: str, name: str) -> NetworkConfigList:
    """libcni LoadNetworkConf: a *.conflist by name, else a *.conf/*.json by name."""
    lists = sorted(glob.glob(os.path.join(confdir, "*.conflist")))
    singles = sorted(glob.glob(os.path.join(confdir, "*.conf")) + glob.glob(os.path.join(confdir, "*.json")))
    conf = _first_named(lists, NetworkConfigList.from_bytes, name) or _first_named(singles, NetworkConfigList.from_single, name)
    if conf is None:
        raise CNIError(f'no net configuration with name "{name}" in {confdir}')
    return conf


def _first_named(paths: list[str], parse, name: str) -> NetworkConfigList | None:
    """The first of `paths` that `parse` reads as the network `name`; files it cannot read are passed over."""
    for path in paths:
        with open(path, "rb") as f:
            raw = f.read()
        try:
            conf = parse(raw)
        except CNIError:
            continue
        if conf.name == name:
            return conf
    return None


# --- runtime arguments --------------------------------------------------------


@dataclass
class RuntimeConf:
    container_id: str
    netns: str
    ifname: str = "eth0"
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict = field(default_factory=dict)


def parse_cni_args(text: str) -> list[tuple[str, str]]:
    """cnitool's reading of CNI_ARGS: K=V pairs separated by ';', neither side empty."""
    pairs = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise CNIError(f"invalid CNI_ARGS pair {pair!r}")
        pairs.append((kv[0], kv[1]))
    return pairs


# --- result conversion (for cached results read back in another version) -----


def convert_result(result: dict, version: str) -> dict:
    """Convert a result between the spec's result versions (SPEC 'Version considerations')."""
    src = result.get("cniVersion", "") or version
    if src == version:
        return dict(result, cniVersion=version)
    legacy = lambda v: parse_version(v) < (0, 3, 0)
    # normalise to the 1.x shape
    if legacy(src):
        current = {"cniVersion": version, "ips": [], "routes": []}
        for fam, ver in (("ip4", "4"), ("ip6", "6")):
            block = result.get(fam)
            if block:
                ip = {"address": block["ip"]}
                if block.get("gateway"):
                    ip["gateway"] = block["gateway"]
                current["ips"].append(ip)
                current["routes"] += block.get("routes") or []
        if result.get("dns"):
            current["dns"] = result["dns"]
    else:
        current = json.loads(json.dumps(result))
        for ip in current.get("ips", []):
            ip.pop("version", None)
    if legacy(version):
        out = {"cniVersion": version}
        for fam, is_v6 in (("ip4", False), ("ip6", True)):
            ip = next((i for i in current.get("ips", []) if (":" in i["address"]) == is_v6), None)
            if ip is None:
                continue
            block = {"ip": ip["address"]}
            if ip.get("gateway"):
                block["gateway"] = ip["gateway"]
            routes = [{k: r[k] for k in ("dst", "gw") if k in r} for r in current.get("routes", []) if (":" in r["dst"]) == is_v6]
            if routes:
                block["routes"] = routes
            out[fam] = block
        if not ("ip4" in out or "ip6" in out):
            raise CNIError("cannot convert: no valid IP addresses")
        out["dns"] = current.get("dns", {})
        return out
    current["cniVersion"] = version
    if parse_version(version) < (1, 0, 0):
        for ip in current.get("ips", []):
            ip["version"] = "6" if ":" in ip["address"] else "4"
        for iface in current.get("interfaces", []):
            for key in ("mtu", "socketPath", "pciID"):
                iface.pop(key, None)
    return current


# --- the runtime --------------------------------------------------------------


class CNIConfig:
    """Runs network configuration lists against plugins found on `path`."""

    def __init__(self, path: list[str], cache_dir: str = "", exec_prefix: list[str] | None = None, env: dict | None = None,
                 timeout: float = 120, log=None):
        self.path = [p for p in path if p]
        self.cache_dir = cache_dir or DEFAULT_CACHE_DIR
        self.exec_prefix = list(exec_prefix or [])
        self.env = dict(os.environ if env is None else env)
        self.timeout = timeout
        self.log = log  # callable(command, plugin_type, env, stdin) for recording calls

    # plugins -----------------------------------------------------------------

    def find_in_path(self, plugin_type: str) -> str:
        if not plugin_type or "/" in plugin_type or "\\" in plugin_type:
            raise CNIError(f"invalid plugin name {plugin_type!r}")
        if not self.path:
            raise CNIError("no paths provided (set CNI_PATH)")
        for directory in self.path:
            candidate = os.path.join(directory, plugin_type)
            if os.path.isfile(candidate):
                return candidate
        raise CNIError(f'failed to find plugin "{plugin_type}" in path {self.path}')

    def _env(self, command: str, rt: RuntimeConf | None) -> dict:
        env = {k: v for k, v in self.env.items() if not k.startswith("CNI_")}
        env.update({
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id if rt else "",
            "CNI_NETNS": rt.netns if rt else "",
            "CNI_ARGS": ";".join(f"{k}={v}" for k, v in rt.args) if rt else "",
            "CNI_IFNAME": rt.ifname if rt else "",
            "CNI_PATH": os.pathsep.join(self.path),
        })
        return env

    def exec_plugin(self, plugin_type: str, command: str, stdin: bytes, rt: RuntimeConf | None, want_result: bool,
                    version: str = "") -> dict | None:
        binary = self.find_in_path(plugin_type)
        env = self._env(command, rt)
        if self.log:
            self.log(command, plugin_type, env, stdin)
        proc = subprocess.run(self.exec_prefix + [binary], input=stdin, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=self.timeout)
        stderr = proc.stderr.decode(errors="replace")
        if proc.returncode != 0:
            raise _plugin_error(plugin_type, proc.stdout, stderr)
        if not want_result:
            return None
        try:
            result = json.loads(proc.stdout)
        except ValueError as exc:
            raise CNIError(f"decoding result: {exc}: {proc.stdout[:200]!r}", plugin=plugin_type, stderr=stderr) from None
        if not isinstance(result, dict):
            raise CNIError("result is not a JSON object", plugin=plugin_type, stderr=stderr)
        if not result.get("cniVersion"):
            result["cniVersion"] = version  # libcni's fixupResultVersion
        return result

    def version_info(self, plugin_type: str) -> list[str]:
        env = {k: v for k, v in self.env.items() if not k.startswith("CNI_")}
        env.update({"CNI_COMMAND": "VERSION", "CNI_CONTAINERID": "", "CNI_NETNS": "dummy", "CNI_IFNAME": "dummy",
                    "CNI_PATH": "dummy", "CNI_ARGS": ""})
        stdin = json.dumps({"cniVersion": IMPLEMENTED_VERSION}).encode()
        if self.log:
            self.log("VERSION", plugin_type, env, stdin)
        proc = subprocess.run(self.exec_prefix + [self.find_in_path(plugin_type)], input=stdin, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=self.timeout)
        if proc.returncode != 0:
            err = _plugin_error(plugin_type, proc.stdout, proc.stderr.decode(errors="replace"))
            if err.msg == "unknown CNI_COMMAND: VERSION":
                return ["0.1.0"]
            raise err
        doc = json.loads(proc.stdout)
        versions = doc.get("supportedVersions") or (["0.1.0", "0.2.0"] if doc.get("cniVersion") == "0.2.0" else [])
        return list(versions)

    # configuration building --------------------------------------------------

    @staticmethod
    def build_config(plugin: dict, name: str, version: str, prev_result: dict | None, rt: RuntimeConf | None) -> bytes:
        conf = json.loads(json.dumps(plugin))
        conf["name"] = name
        conf["cniVersion"] = version
        if prev_result is not None:
            conf["prevResult"] = prev_result
        if rt is not None:
            caps = conf.get("capabilities") or {}
            runtime_config = {cap: rt.capability_args[cap] for cap, on in caps.items() if on is True and cap in rt.capability_args}
            if runtime_config:
                conf["runtimeConfig"] = runtime_config
        return json.dumps(conf, sort_keys=True).encode()

    # the cache ---------------------------------------------------------------

    def cache_path(self, net: str, rt: RuntimeConf) -> str:
        if not net or not rt.container_id or not rt.ifname:
            raise CNIError(f"cache file path requires network name ({net!r}), container ID ({rt.container_id!r}) and interface name ({rt.ifname!r})")
        return os.path.join(self.cache_dir, "results", f"{net}-{rt.container_id}-{rt.ifname}")

    def cache_add(self, result: dict, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        doc = {"kind": CACHE_KIND, "containerId": rt.container_id, "config": base64.b64encode(conflist.raw).decode(),
               "ifName": rt.ifname, "networkName": conflist.name}
        if rt.netns:
            doc["netns"] = rt.netns
        if rt.args:
            doc["cniArgs"] = [list(pair) for pair in rt.args]
        if rt.capability_args:
            doc["capabilityArgs"] = rt.capability_args
        doc["result"] = result
        path = self.cache_path(conflist.name, rt)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def cached(self, net: str, rt: RuntimeConf) -> dict | None:
        try:
            with open(self.cache_path(net, rt)) as f:
                doc = json.load(f)
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def cached_result(self, conflist: NetworkConfigList, rt: RuntimeConf) -> dict | None:
        doc = self.cached(conflist.name, rt)
        if doc is None:
            return None
        result = doc.get("result") if doc.get("kind") == CACHE_KIND else doc  # legacy caches hold the bare result
        if not isinstance(result, dict):
            return None
        return convert_result(result, conflist.cni_version)

    def cache_del(self, net: str, rt: RuntimeConf) -> None:
        try:
            os.unlink(self.cache_path(net, rt))
        except (OSError, CNIError):
            pass

    def cached_attachments(self) -> list[dict]:
        results = os.path.join(self.cache_dir, "results")
        try:
            names = sorted(os.listdir(results))
        except OSError:
            return []
        out = []
        for name in names:
            try:
                with open(os.path.join(results, name)) as f:
                    doc = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("kind") == CACHE_KIND and doc.get("ifName") and doc.get("networkName"):
                out.append(doc)
        return out

    # the operations ------------------------------------------------------------

    def add(self, conflist: NetworkConfigList, rt: RuntimeConf) -> dict:
        for what, value in (("container ID", rt.container_id), ("network name", conflist.name)):
            if not value or not _NAME_RE.match(value):
                raise CNIError(f"invalid {what} {value!r}", 3 if what == "container ID" and not value else 4)
        if not rt.ifname or len(rt.ifname) > 15 or rt.ifname in (".", "..") or any(c in rt.ifname for c in "/: \t\n"):
            raise CNIError(f"invalid interface name {rt.ifname!r}", 4)
        result = None
        for plugin in conflist.plugins:
            stdin = self.build_config(plugin, conflist.name, conflist.cni_version, result, rt)
            try:
                result = self.exec_plugin(plugin["type"], "ADD", stdin, rt, True, conflist.cni_version)
            except CNIError as exc:
                exc.msg = f'plugin type="{plugin["type"]}" failed (add): {exc.msg}'
                raise
        self.cache_add(result, conflist, rt)
        return result

    def check(self, conflist: NetworkConfigList, rt: RuntimeConf) -> None:
        if not version_at_least(conflist.cni_version, "0.4.0"):
            raise CNIError(f'configuration version "{conflist.cni_version}" does not support the CHECK command')
        if conflist.disable_check:
            return
        prev = self.cached_result(conflist, rt)
        for plugin in conflist.plugins:
            stdin = self.build_config(plugin, conflist.name, conflist.cni_version, prev, rt)
            self.exec_plugin(plugin["type"], "CHECK", stdin, rt, False)

    def delete(self, conflist: NetworkConfigList, rt: RuntimeConf, prev: dict | None = None, use_cache: bool = True) -> None:
        if prev is None and use_cache and version_at_least(conflist.cni_version, "0.4.0"):
            try:
                prev = self.cached_result(conflist, rt)
            except CNIError:
                prev = None
        for plugin in reversed(conflist.plugins):
            stdin = self.build_config(plugin, conflist.name, conflist.cni_version, prev, rt)
            try:
                self.exec_plugin(plugin["type"], "DEL", stdin, rt, False)
            except CNIError as exc:
                exc.msg = f'plugin type="{plugin["type"]}" failed (delete): {exc.msg}'
                raise
        self.cache_del(conflist.name, rt)

    def gc(self, conflist: NetworkConfigList, valid: list[dict] | None = None) -> None:
        """valid=None: no valid-attachments key at all (cnitool's gc: everything is stale)."""
        errors: list[str] = []
        valid_set = {(a["containerID"], a["ifname"]) for a in (valid or [])}
        for doc in self.cached_attachments():
            if doc["networkName"] != conflist.name or (doc.get("containerId"), doc["ifName"]) in valid_set:
                continue
            rt = RuntimeConf(container_id=doc.get("containerId", ""), netns=doc.get("netns", ""), ifname=doc["ifName"],
                             args=[tuple(p) for p in doc.get("cniArgs") or []], capability_args=doc.get("capabilityArgs") or {})
            try:
                self.delete(conflist, rt)
            except CNIError as exc:
                errors.append(f"failed to delete stale attachment {rt.container_id} {rt.ifname}: {exc}")
        if version_at_least(conflist.cni_version, "1.1.0") and not conflist.disable_gc:
            for plugin in conflist.plugins:
                conf = json.loads(json.dumps(plugin))
                conf["name"], conf["cniVersion"] = conflist.name, conflist.cni_version
                if valid is not None:
                    conf["cni.dev/valid-attachments"] = valid
                    conf["cni.dev/attachments"] = valid
                try:
                    self.exec_plugin(plugin["type"], "GC", json.dumps(conf, sort_keys=True).encode(), None, False)
                except CNIError as exc:
                    errors.append(f"failed to GC plugin {plugin['type']}: {exc}")
        if errors:
            raise CNIError("; ".join(errors))

    def status(self, conflist: NetworkConfigList) -> None:
        if not version_at_least(conflist.cni_version, "1.1.0"):
            return
        for plugin in conflist.plugins:
            conf = json.loads(json.dumps(plugin))
            conf["name"], conf["cniVersion"] = conflist.name, conflist.cni_version
            self.exec_plugin(plugin["type"], "STATUS", json.dumps(conf, sort_keys=True).encode(), None, False)


def _plugin_error(plugin_type: str, stdout: bytes, stderr: str) -> CNIError:
    text = stdout.strip()
    if not text:
        return CNIError(stderr.strip() or "plugin failed without output", plugin=plugin_type, stderr=stderr)
    try:
        doc = json.loads(text)
    except ValueError:
        return CNIError(f"netplugin failed but error parsing its diagnostic message {text[:200]!r}", plugin=plugin_type, stderr=stderr)
    if not isinstance(doc, dict):
        return CNIError(f"plugin error is not a JSON object: {text[:200]!r}", plugin=plugin_type, stderr=stderr)
    return CNIError(str(doc.get("msg", "")), doc.get("code") if isinstance(doc.get("code"), int) else None, str(doc.get("details", "") or ""),
                    plugin=plugin_type, stderr=stderr)
