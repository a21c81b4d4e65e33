"""VLANs in logic: which VLANs a new port gets from vlan, vlanTrunk and preserveDefaultVlan.

The kernel side is in test_vlan.py.
"""

import pytest

from cni_bridge.bridge import port_vlan_plan
from cni_bridge.conf import BridgeConf
from common.skel import CmdArgs

pytestmark = pytest.mark.unit

PVID_UNTAGGED = 0x6  # BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED: the default VLAN 1 of a new port


def conf(**keys) -> BridgeConf:
    return BridgeConf.load(CmdArgs.for_config({"cniVersion": "1.1.0", "name": "vl", "type": "bridge", **keys}, command="ADD"))


def trunk(*ids, lo=None, hi=None) -> list:
    items = [{"id": i} for i in ids]
    return items + ([{"minID": lo, "maxID": hi}] if lo is not None else [])


DEFAULT = [(1, PVID_UNTAGGED)]
PLANS = {
    # name: (config keys, the port's VLANs now, (delete, add))
    "no VLAN keys: nothing": ({}, DEFAULT, ([], [])),
    "access port": ({"vlan": 100}, DEFAULT, ([1], [(100, True)])),
    "access port, preserveDefaultVlan": ({"vlan": 100, "preserveDefaultVlan": True}, DEFAULT, ([], [(100, True)])),
    "trunk: native VLAN 1 untagged, the rest tagged": (
        {"vlanTrunk": trunk(101, lo=200, hi=202)},
        DEFAULT,
        ([1], [(1, True), (101, False), (200, False), (201, False), (202, False)]),
    ),
    "trunk with vlan: vlan is the native VLAN": (
        {"vlan": 100, "vlanTrunk": trunk(101, 102)},
        DEFAULT,
        ([1], [(100, True), (101, False), (102, False)]),
    ),
    "trunk listing the native VLAN: it stays untagged": ({"vlan": 101, "vlanTrunk": trunk(101, 102)}, DEFAULT, ([1], [(101, True), (102, False)])),
    "trunk, preserveDefaultVlan": ({"vlanTrunk": trunk(7), "preserveDefaultVlan": True}, DEFAULT, ([], [(1, True), (7, False)])),
    "empty trunk: filtering with the native VLAN only": ({"vlanTrunk": []}, DEFAULT, ([1], [(1, True)])),
    "every existing entry goes without preserveDefaultVlan": ({"vlan": 5}, [(1, PVID_UNTAGGED), (9, 0)], ([1, 9], [(5, True)])),
    "preserveDefaultVlan false is the default (since upstream 1.8.0)": ({"vlan": 5, "preserveDefaultVlan": False}, DEFAULT, ([1], [(5, True)])),
}


@pytest.mark.parametrize("name", list(PLANS))
def test_port_vlan_plan(name):
    keys, current, expected = PLANS[name]
    assert port_vlan_plan(current, conf(**keys)) == expected


def test_trunk_is_the_sorted_union_of_ids_and_ranges():
    parsed = conf(vlanTrunk=[{"id": 5}, {"minID": 3, "maxID": 6}, {"id": 4094}, {"minID": 1, "maxID": 1}])
    assert parsed.vlan_trunk == (1, 3, 4, 5, 6, 4094)
    assert parsed.vlan_filtering and not conf(vlan=0).vlan_filtering and conf(vlanTrunk=[]).vlan_filtering
