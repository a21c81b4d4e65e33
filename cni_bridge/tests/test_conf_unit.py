"""BridgeConf.load without root: every key's default (README, "bridge configuration"), each key set, and refusals (code 7).

The kernel-side refusals (nothing touched on the node) are in test_bad_config.py.
"""

import os

import pytest

from cni_bridge.conf import BridgeConf
from common import skel
from common.errors import CNIError, Code
from common.types import DNS
from common.values import FrozenInstanceError

pytestmark = pytest.mark.unit

BASE = {"cniVersion": "1.1.0", "name": "unit-net", "type": "bridge"}
IPAM = {"type": "host-local", "subnet": "10.22.0.0/24"}


def load(cni_args: dict | None = None, **keys) -> BridgeConf:
    return BridgeConf.load(skel.CmdArgs.for_config({**BASE, **keys}, command="ADD", cni_args=cni_args))


def refused(cni_args: dict | None = None, **keys) -> CNIError:
    with pytest.raises(CNIError) as err:
        load(cni_args, **keys)
    assert err.value.code == Code.INVALID_CONFIG, err.value
    return err.value


@pytest.fixture
def nft(monkeypatch):
    """Whether `nft` is found: the default masquerade backend depends on it."""

    def present(value: bool):
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: value if path.endswith("/nft") else real(path, mode))

    return present


# --- defaults --------------------------------------------------------------------------

DEFAULTS = {
    "name": "unit-net",
    "bridge": "cni0",
    "is_gateway": False,
    "is_default_gateway": False,
    "force_address": False,
    "ip_masq": False,
    "mtu": 0,
    "hairpin_mode": False,
    "promisc_mode": False,
    "vlan": 0,
    "vlan_trunk": None,
    "preserve_default_vlan": False,
    "enable_dad": False,
    "mac_spoof_check": False,
    "disable_container_interface": False,
    "port_isolation": False,
    "mac": "",
    "ipam_type": "",
    "dns": None,
    "data_dir": "/var/lib/cni/bridge",
}


def test_every_default_is_the_documented_one(nft):
    nft(True)
    c = load()
    fields = c.as_dict()
    assert {k: fields[k] for k in DEFAULTS} == DEFAULTS
    assert set(fields) == set(DEFAULTS) | {"ip_masq_backend"}, "a new field needs a default here"
    assert c.ip_masq_backend == "nftables"
    assert not c.layer3 and not c.vlan_filtering


def test_the_masquerade_backend_defaults_to_iptables_without_nft(nft):
    nft(False)
    assert load().ip_masq_backend == "iptables"
    assert load(ipMasqBackend="nftables").ip_masq_backend == "nftables"  # an explicit choice is kept


def test_empty_strings_mean_the_default():
    c = load(bridge="", dataDir="", ipMasqBackend="iptables")
    assert (c.bridge, c.data_dir) == ("cni0", "/var/lib/cni/bridge")


# --- each key set --------------------------------------------------------------------------

# name: (config keys, CNI_ARGS, the fields that differ from DEFAULTS)
GOOD = {
    "bridge": ({"bridge": "br-test"}, None, {"bridge": "br-test"}),
    "bridge of 15 bytes": ({"bridge": "b" * 15}, None, {"bridge": "b" * 15}),
    "bridge with a dot, dash and underscore": ({"bridge": "br.v_1-x"}, None, {"bridge": "br.v_1-x"}),
    "isGateway": ({"isGateway": True}, None, {"is_gateway": True}),
    "isDefaultGateway implies isGateway": ({"isDefaultGateway": True}, None, {"is_gateway": True, "is_default_gateway": True}),
    "isDefaultGateway overrides isGateway false": (
        {"isGateway": False, "isDefaultGateway": True},
        None,
        {"is_gateway": True, "is_default_gateway": True},
    ),
    "forceAddress": ({"forceAddress": True}, None, {"force_address": True}),
    "ipMasq": ({"ipMasq": True}, None, {"ip_masq": True}),
    "mtu 0 is the kernel's default": ({"mtu": 0}, None, {}),
    "mtu 68": ({"mtu": 68}, None, {"mtu": 68}),
    "mtu 1400": ({"mtu": 1400}, None, {"mtu": 1400}),
    "mtu 65535": ({"mtu": 65535}, None, {"mtu": 65535}),
    "hairpinMode": ({"hairpinMode": True}, None, {"hairpin_mode": True}),
    "promiscMode": ({"promiscMode": True}, None, {"promisc_mode": True}),
    "hairpinMode false with promiscMode": ({"hairpinMode": False, "promiscMode": True}, None, {"promisc_mode": True}),
    "vlan 1": ({"vlan": 1}, None, {"vlan": 1}),
    "vlan 4094": ({"vlan": 4094}, None, {"vlan": 4094}),
    "vlan 0 is none": ({"vlan": 0}, None, {}),
    "vlanTrunk ids": ({"vlanTrunk": [{"id": 10}, {"id": 4094}, {"id": 1}]}, None, {"vlan_trunk": (1, 10, 4094)}),
    "vlanTrunk range": ({"vlanTrunk": [{"minID": 100, "maxID": 103}]}, None, {"vlan_trunk": (100, 101, 102, 103)}),
    "vlanTrunk overlapping ids and ranges": (
        {"vlanTrunk": [{"minID": 5, "maxID": 7}, {"id": 6}, {"minID": 6, "maxID": 8}]},
        None,
        {"vlan_trunk": (5, 6, 7, 8)},
    ),
    "vlanTrunk item with a range and an id": ({"vlanTrunk": [{"minID": 2, "maxID": 3, "id": 9}]}, None, {"vlan_trunk": (2, 3, 9)}),
    "vlanTrunk empty": ({"vlanTrunk": []}, None, {"vlan_trunk": ()}),
    "vlanTrunk empty item (Go ignores it too)": ({"vlanTrunk": [{}]}, None, {"vlan_trunk": ()}),
    "preserveDefaultVlan": ({"preserveDefaultVlan": True}, None, {"preserve_default_vlan": True}),
    "enabledad": ({"enabledad": True}, None, {"enable_dad": True}),
    "macspoofchk": ({"macspoofchk": True}, None, {"mac_spoof_check": True}),
    "disableContainerInterface (layer 2)": ({"disableContainerInterface": True}, None, {"disable_container_interface": True}),
    "disableContainerInterface with an empty ipam": ({"disableContainerInterface": True, "ipam": {}}, None, {"disable_container_interface": True}),
    "portIsolation": ({"portIsolation": True}, None, {"port_isolation": True}),
    "ipam": ({"ipam": IPAM}, None, {"ipam_type": "host-local"}),
    "ipam of another plugin": ({"ipam": {"type": "dhcp"}}, None, {"ipam_type": "dhcp"}),
    "ipam {} is layer 2": ({"ipam": {}}, None, {}),
    "dns": (
        {"dns": {"nameservers": ["192.0.2.53", "2001:db8::53"], "domain": "example.test", "search": ["a.test"], "options": ["ndots:2"]}},
        None,
        {"dns": DNS(("192.0.2.53", "2001:db8::53"), "example.test", ("a.test",), ("ndots:2",))},
    ),
    "dns domain only": ({"dns": {"domain": "example.test"}}, None, {"dns": DNS((), "example.test", (), ())}),
    "dns {} is none": ({"dns": {}}, None, {}),
    "dns with empty lists is none": ({"dns": {"nameservers": [], "search": []}}, None, {}),
    "dataDir": ({"dataDir": "/run/cni/bridge-test"}, None, {"data_dir": "/run/cni/bridge-test"}),
    "dataDir is normalised": ({"dataDir": "/run//cni/./bridge/"}, None, {"data_dir": "/run/cni/bridge"}),
    "runtimeConfig.mac": ({"runtimeConfig": {"mac": "02:00:00:00:00:0a"}}, None, {"mac": "02:00:00:00:00:0a"}),
    "args.cni.mac": ({"args": {"cni": {"mac": "02:00:00:00:00:0b"}}}, None, {"mac": "02:00:00:00:00:0b"}),
    "CNI_ARGS MAC": ({}, {"MAC": "02:00:00:00:00:0c"}, {"mac": "02:00:00:00:00:0c"}),
    "runtimeConfig.mac wins over args.cni.mac and CNI_ARGS": (
        {"runtimeConfig": {"mac": "02:00:00:00:00:0a"}, "args": {"cni": {"mac": "02:00:00:00:00:0b"}}},
        {"MAC": "02:00:00:00:00:0c"},
        {"mac": "02:00:00:00:00:0a"},
    ),
    "args.cni.mac wins over CNI_ARGS": ({"args": {"cni": {"mac": "02:00:00:00:00:0b"}}}, {"MAC": "02:00:00:00:00:0c"}, {"mac": "02:00:00:00:00:0b"}),
    "only the winning MAC source is parsed": (
        {"runtimeConfig": {"mac": "02:00:00:00:00:0a"}, "args": {"cni": {"mac": "not-a-mac"}}},
        {"MAC": "01:00:5e:00:00:01"},
        {"mac": "02:00:00:00:00:0a"},
    ),
    "an empty runtimeConfig.mac falls through": ({"runtimeConfig": {"mac": ""}}, {"MAC": "02:00:00:00:00:0c"}, {"mac": "02:00:00:00:00:0c"}),
    "MAC with dashes, upper case": ({"runtimeConfig": {"mac": "0A-1B-2C-3D-4E-5F"}}, None, {"mac": "0a:1b:2c:3d:4e:5f"}),
    "MAC in dotted form": ({"runtimeConfig": {"mac": "0a1b.2c3d.4e5f"}}, None, {"mac": "0a:1b:2c:3d:4e:5f"}),
    # twelve bare hex digits: accepted, as Go's net.ParseMAC does since golang/go#66682 (older Go refuses them)
    "MAC without separators": ({"runtimeConfig": {"mac": "0A1B2C3D4E5F"}}, None, {"mac": "0a:1b:2c:3d:4e:5f"}),
    "locally administered unicast MAC": ({"runtimeConfig": {"mac": "fe:ff:ff:ff:ff:ff"}}, None, {"mac": "fe:ff:ff:ff:ff:ff"}),
    "keys match case-insensitively": (
        {"MTU": 1300, "IsGateway": True, "BRIDGE": "brcase", "IPMASQ": True},
        None,
        {"mtu": 1300, "is_gateway": True, "bridge": "brcase", "ip_masq": True},
    ),
    "an exact key wins over a folded one": ({"mtu": 1400, "MTU": 9000}, None, {"mtu": 1400}),
    "unknown keys are ignored": ({"someOtherPluginsKey": {"x": [1, 2]}, "capabilities": {"mac": True}}, None, {}),
    "CNI_ARGS without MAC": ({}, {"IgnoreUnknown": "1", "K8S_POD_NAME": "p"}, {}),
    "VLAN gateway name of exactly 15 bytes": (
        {"bridge": "b" * 10, "vlan": 4094, "isGateway": True, "ipam": IPAM},
        None,
        {"bridge": "b" * 10, "vlan": 4094, "is_gateway": True, "ipam_type": "host-local"},
    ),
    "a long bridge name with a VLAN is fine without a gateway": (
        {"bridge": "b" * 15, "vlan": 100, "ipam": IPAM},
        None,
        {"bridge": "b" * 15, "vlan": 100, "ipam_type": "host-local"},
    ),
    "a long bridge name with a VLAN gateway is fine at layer 2": (
        {"bridge": "b" * 15, "vlan": 100, "isGateway": True},
        None,
        {"bridge": "b" * 15, "vlan": 100, "is_gateway": True},
    ),
}


@pytest.mark.parametrize("case", list(GOOD))
def test_a_good_config_parses(case, nft):
    nft(True)
    keys, cni_args, changed = GOOD[case]
    fields = load(cni_args, **keys).as_dict()
    fields.pop("ip_masq_backend")
    if "dns" in changed and changed["dns"] is not None:
        fields["dns"] = DNS(**fields["dns"])  # as_dict turned it into a dict
    assert fields == {**DEFAULTS, **changed}


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_ipmasq_backend(backend, nft):
    nft(backend == "iptables")  # the opposite of what the default would be
    assert load(ipMasqBackend=backend).ip_masq_backend == backend


def test_derived_properties():
    assert load(ipam=IPAM).layer3 and not load(ipam={}).layer3
    assert load(vlan=3).vlan_filtering and load(vlanTrunk=[]).vlan_filtering and not load(vlan=0).vlan_filtering


def test_the_config_is_frozen():
    c = load()
    with pytest.raises(FrozenInstanceError):
        c.mtu = 1


# --- refusals ---------------------------------------------------------------------------------

# name: (config keys, CNI_ARGS, a fragment of the message or details)
BAD = {
    # wrong types
    "mtu as a string": ({"mtu": "1500"}, None, "invalid mtu"),
    "mtu as a float": ({"mtu": 1500.0}, None, "invalid mtu"),
    "mtu as a bool": ({"mtu": True}, None, "invalid mtu"),
    "vlan as a string": ({"vlan": "100"}, None, "invalid vlan"),
    "vlan as a bool": ({"vlan": True}, None, "invalid vlan"),
    "isGateway as a string": ({"isGateway": "true"}, None, "invalid isGateway"),
    "isGateway as 1": ({"isGateway": 1}, None, "invalid isGateway"),
    "isDefaultGateway as null-ish string": ({"isDefaultGateway": "false"}, None, "invalid isDefaultGateway"),
    "forceAddress as 0": ({"forceAddress": 0}, None, "invalid forceAddress"),
    "ipMasq as a list": ({"ipMasq": [True]}, None, "invalid ipMasq"),
    "hairpinMode as a string": ({"hairpinMode": "on"}, None, "invalid hairpinMode"),
    "promiscMode as 1": ({"promiscMode": 1}, None, "invalid promiscMode"),
    "preserveDefaultVlan as a string": ({"preserveDefaultVlan": "yes"}, None, "invalid preserveDefaultVlan"),
    "enabledad as a string": ({"enabledad": "true"}, None, "invalid enabledad"),
    "macspoofchk as 1": ({"macspoofchk": 1}, None, "invalid macspoofchk"),
    "disableContainerInterface as a string": ({"disableContainerInterface": "true"}, None, "invalid disableContainerInterface"),
    "portIsolation as a string": ({"portIsolation": "true"}, None, "invalid portIsolation"),
    "bridge as a number": ({"bridge": 5}, None, "invalid bridge"),
    "bridge as a list": ({"bridge": ["br0"]}, None, "invalid bridge"),
    "ipMasqBackend as a number": ({"ipMasqBackend": 1}, None, "invalid ipMasqBackend"),
    "vlanTrunk as an object": ({"vlanTrunk": {"id": 1}}, None, "invalid vlanTrunk"),
    "vlanTrunk item as a number": ({"vlanTrunk": [5]}, None, "invalid vlanTrunk"),
    "vlanTrunk id as a string": ({"vlanTrunk": [{"id": "5"}]}, None, "invalid vlanTrunk.id"),
    "vlanTrunk minID as a float": ({"vlanTrunk": [{"minID": 1.0, "maxID": 2}]}, None, "invalid vlanTrunk.minID"),
    "ipam as a list": ({"ipam": []}, None, "invalid ipam"),
    "ipam as a string": ({"ipam": "host-local"}, None, "invalid ipam"),
    "ipam.type as a number": ({"ipam": {"type": 7}}, None, "invalid ipam.type"),
    "dns as a list": ({"dns": ["192.0.2.53"]}, None, "invalid dns"),
    "dns.nameservers as a string": ({"dns": {"nameservers": "192.0.2.53"}}, None, "invalid dns.nameservers"),
    "dns.nameservers with a number": ({"dns": {"nameservers": [53]}}, None, "invalid dns.nameservers"),
    "dns.domain as a list": ({"dns": {"domain": ["a"]}}, None, "invalid dns.domain"),
    "dataDir as a number": ({"dataDir": 5}, None, "invalid dataDir"),
    "runtimeConfig as a list": ({"runtimeConfig": []}, None, "invalid runtimeConfig"),
    "runtimeConfig.mac as a number": ({"runtimeConfig": {"mac": 5}}, None, "invalid runtimeConfig.mac"),
    "args as a string": ({"args": "cni"}, None, "invalid args"),
    "args.cni as a list": ({"args": {"cni": []}}, None, "invalid args.cni"),
    "args.cni.mac as a number": ({"args": {"cni": {"mac": 1}}}, None, "invalid args.cni.mac"),
    # out of range
    "mtu 1": ({"mtu": 1}, None, "68..65535"),
    "mtu 67": ({"mtu": 67}, None, "68..65535"),
    "mtu 65536": ({"mtu": 65536}, None, "68..65535"),
    "mtu -1": ({"mtu": -1}, None, "68..65535"),
    "mtu 2**64": ({"mtu": 2**64}, None, "68..65535"),
    "vlan -1": ({"vlan": -1}, None, "invalid VLAN ID -1"),
    "vlan 4095": ({"vlan": 4095}, None, "invalid VLAN ID 4095"),
    "vlan 2**64": ({"vlan": 2**64}, None, "invalid VLAN ID"),
    "vlanTrunk id 0": ({"vlanTrunk": [{"id": 0}]}, None, "incorrect trunk id"),
    "vlanTrunk id 4095": ({"vlanTrunk": [{"id": 4095}]}, None, "incorrect trunk id"),
    "vlanTrunk minID 0": ({"vlanTrunk": [{"minID": 0, "maxID": 5}]}, None, "incorrect trunk minID"),
    "vlanTrunk maxID 4095": ({"vlanTrunk": [{"minID": 1, "maxID": 4095}]}, None, "incorrect trunk maxID"),
    "vlanTrunk minID above maxID": ({"vlanTrunk": [{"minID": 9, "maxID": 8}]}, None, "minID is greater than maxID"),
    "vlanTrunk minID alone": ({"vlanTrunk": [{"minID": 9}]}, None, "maxID is missing"),
    "vlanTrunk maxID alone": ({"vlanTrunk": [{"maxID": 9}]}, None, "minID is missing"),
    "vlanTrunk bad item after good ones": ({"vlanTrunk": [{"id": 1}, {"minID": 2, "maxID": 3}, {"id": 5000}]}, None, "incorrect trunk id"),
    # MACs, from each source
    "runtimeConfig.mac garbage": ({"runtimeConfig": {"mac": "not-a-mac"}}, None, "runtimeConfig.mac"),
    "runtimeConfig.mac too short": ({"runtimeConfig": {"mac": "02:00:00:00:00"}}, None, "48-bit"),
    "runtimeConfig.mac EUI-64": ({"runtimeConfig": {"mac": "02:00:00:00:00:00:00:01"}}, None, "48-bit"),
    "runtimeConfig.mac bad hex": ({"runtimeConfig": {"mac": "02:00:00:00:00:zz"}}, None, "48-bit"),
    "runtimeConfig.mac mixed separators": ({"runtimeConfig": {"mac": "02:00-00:00:00:01"}}, None, "48-bit"),
    "runtimeConfig.mac with a space": ({"runtimeConfig": {"mac": " 02:00:00:00:00:01"}}, None, "48-bit"),
    "runtimeConfig.mac multicast": ({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}, None, "multicast"),
    "runtimeConfig.mac broadcast": ({"runtimeConfig": {"mac": "ff:ff:ff:ff:ff:ff"}}, None, "multicast"),
    "runtimeConfig.mac all zeros": ({"runtimeConfig": {"mac": "00:00:00:00:00:00"}}, None, "all zeros"),
    "runtimeConfig.mac dotted multicast": ({"runtimeConfig": {"mac": "0300.0000.0001"}}, None, "multicast"),
    "args.cni.mac multicast": ({"args": {"cni": {"mac": "33:33:00:00:00:01"}}}, None, "args.cni.mac"),
    "CNI_ARGS MAC garbage": ({}, {"MAC": "xx"}, "CNI_ARGS MAC"),
    "CNI_ARGS MAC all zeros": ({}, {"MAC": "00-00-00-00-00-00"}, "all zeros"),
    # bridge names
    "bridge of 16 bytes": ({"bridge": "b" * 16}, None, "longer than 15 bytes"),
    "bridge of 16 bytes in 7 characters": ({"bridge": "brü€€€€"}, None, "longer than 15 bytes"),
    "bridge with /": ({"bridge": "br/0"}, None, "'/'"),
    "bridge with :": ({"bridge": "br:0"}, None, "':'"),
    "bridge with %": ({"bridge": "br%d"}, None, "'%'"),
    "bridge with a space": ({"bridge": "br 0"}, None, "' '"),
    "bridge with a tab": ({"bridge": "br\t0"}, None, "'\\t'"),
    "bridge with a newline": ({"bridge": "br0\n"}, None, "'\\n'"),
    "bridge with a quote": ({"bridge": 'br"0'}, None, "contains"),
    "bridge with a backslash": ({"bridge": "br\\0"}, None, "contains"),
    "bridge with a NUL": ({"bridge": "br\x000"}, None, "contains"),
    "bridge with DEL": ({"bridge": "br\x7f"}, None, "contains"),
    "bridge with a zero-width space": ({"bridge": "br\u200b0"}, None, "invisible"),
    "bridge named .": ({"bridge": "."}, None, "'.' or '..'"),
    "bridge named ..": ({"bridge": ".."}, None, "'.' or '..'"),
    "bridge named all": ({"bridge": "all"}, None, "reserved"),
    "bridge named default": ({"bridge": "default"}, None, "reserved"),
    # ipam
    "ipam settings without a type": ({"ipam": {"subnet": "10.22.0.0/24"}}, None, "missing ipam.type"),
    "ipam with an empty type": ({"ipam": {"type": "", "subnet": "10.22.0.0/24"}}, None, "missing ipam.type"),
    "ipam.type a relative path": ({"ipam": {"type": "../host-local"}}, None, "bare file name"),
    "ipam.type an absolute path": ({"ipam": {"type": "/opt/cni/bin/host-local"}}, None, "bare file name"),
    "ipam.type .": ({"ipam": {"type": "."}}, None, "bare file name"),
    "ipam.type ..": ({"ipam": {"type": ".."}}, None, "bare file name"),
    "ipam.type with a NUL": ({"ipam": {"type": "host\x00local"}}, None, "bare file name"),
    # dataDir
    "dataDir relative": ({"dataDir": "var/lib/cni"}, None, "absolute path"),
    "dataDir dot-relative": ({"dataDir": "./state"}, None, "absolute path"),
    "dataDir with ..": ({"dataDir": "/var/lib/../../etc"}, None, "without '..'"),
    "dataDir ending in ..": ({"dataDir": "/var/lib/cni/.."}, None, "without '..'"),
    "dataDir with a NUL": ({"dataDir": "/var/lib/\x00cni"}, None, "invalid dataDir"),
    # combinations
    "hairpinMode with promiscMode": ({"hairpinMode": True, "promiscMode": True}, None, "hairpin mode and promiscuous mode"),
    "ipam with disableContainerInterface": ({"ipam": IPAM, "disableContainerInterface": True}, None, "DisableContainerInterface"),
    "VLAN gateway name of 16 bytes": ({"bridge": "b" * 11, "vlan": 4094, "isGateway": True, "ipam": IPAM}, None, "exceeds 15 bytes"),
    "VLAN gateway name of 16 bytes via isDefaultGateway": (
        {"bridge": "b" * 13, "vlan": 10, "isDefaultGateway": True, "ipam": IPAM},
        None,
        "exceeds 15 bytes",
    ),
    "unknown ipMasqBackend": ({"ipMasqBackend": "pf"}, None, "unknown ipmasq backend"),
    "ipMasqBackend in capitals": ({"ipMasqBackend": "NFTABLES"}, None, "unknown ipmasq backend"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_config_is_code_7(case):
    keys, cni_args, fragment = BAD[case]
    err = refused(cni_args, **keys)
    assert fragment in str(err), err


@pytest.mark.parametrize("mac", ["02:00:00:00:00:01\r\n", "02:00:00:00:00:01 ", "02:00:00:00:00:01\n\n", "0200.0000.0001\n"])
def test_a_mac_with_trailing_whitespace_is_refused(mac):
    refused(runtimeConfig={"mac": mac})


def test_a_mac_with_a_trailing_lf_only_is_refused():
    refused(runtimeConfig={"mac": "02:00:00:00:00:01\n"})
