"""The bad-input matrix (tests/badinput.py): the right code, one error document, and a node left exactly as it was."""
import json

import pytest

from tests import badinput
from tests.badinput import CASES, World

pytestmark = pytest.mark.root

# cases where one of our plugins is known to answer wrongly, with the bug report; strict, so a fix shows up as XPASS
KNOWN_BUGS: dict[str, str] = {}  # case id -> why it fails today (a strict xfail: fixing it must remove the entry)


def difference(before, after, path: str = "") -> str:
    """Where two snapshots first differ, for assertion messages."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after), key=str):
            if before.get(key) != after.get(key):
                return difference(before.get(key), after.get(key), f"{path}.{key}")
    return f"{path}: before {before!r}\n  after {after!r}"


def test_the_matrix_is_large_and_covers_every_plugin():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    for plugin in ("host-local", "bridge", "vxlan", "loopback", "portmap"):
        assert sum(1 for c in CASES if c.plugin == plugin and c.code) >= 15, plugin


@pytest.mark.unit
def test_the_table_is_current():
    with open(badinput.DOC) as f:
        assert f.read() == badinput.render(), "docs/bad-input.md is stale: run .venv/bin/python -m tests.badinput --write"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, bin_dir, netns, tmp_path, request):
    if case.id in KNOWN_BUGS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BUGS[case.id], strict=True))
    world = World(case.plugin, bin_dir, netns, tmp_path, seed=case.seed)
    if case.setup is not None:
        case.setup(world)
    before = world.snapshot()
    out = world.run(case.command, case.config_for(world), cid=case.cid, env=case.env_for(world), stdin=case.stdin_for(world))
    if case.code == 0:
        assert out.rc == 0, out
    else:
        assert out.rc == 1, out
        text = out.stdout.decode()
        doc = json.loads(text)  # exactly one document: json.loads refuses trailing data
        assert set(doc) == {"cniVersion", "code", "msg", "details"}, doc
        assert doc["code"] == case.code, out
        assert doc["msg"] and case.fragment.lower() in doc["msg"].lower(), out
        if case.command == "DEL":
            # go-cni treats DEL errors containing "not found" as success: the address would leak
            assert "not found" not in f"{doc['msg']} {doc['details']}".lower(), doc
        after = world.snapshot()
        assert after == before, difference(before, after)
    if case.check is not None:
        case.check(world, out)
