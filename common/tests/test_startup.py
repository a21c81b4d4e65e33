"""common/startup.py: its JSON reads and writes exactly as json does."""

import json
import random

import pytest

from common import startup

pytestmark = pytest.mark.unit

DOCUMENTS = [
    {},
    [],
    {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0}],
        "routes": [],
        "dns": {},
    },
    {"a": [1, 2.5, -3, 10**30, True, False, None, 'é\u2028"\\\n', [], {}], "nested": {"b": {"c": [[[]]]}}},
    "just a string",
    0,
    -0.0,
    1e-7,
]


@pytest.mark.parametrize("doc", DOCUMENTS)
@pytest.mark.parametrize("indent", [None, 4])
@pytest.mark.parametrize("ascii_only", [True, False])
def test_dumps_is_json_dumps(doc, indent, ascii_only):
    assert startup.dumps(doc, indent=indent, ensure_ascii=ascii_only) == json.dumps(doc, indent=indent, ensure_ascii=ascii_only)


@pytest.mark.parametrize("odd", [{1: "int key"}, {"x": float("nan")}, {"x": float("inf")}, (1, 2), {"t": (1, [2])}])
def test_values_it_does_not_write_itself_go_to_json(odd):
    assert startup.dumps(odd) == json.dumps(odd) and startup.dumps(odd, indent=4) == json.dumps(odd, indent=4)


def test_objects_json_cannot_write_fail_as_in_json():
    with pytest.raises(TypeError) as ours:
        startup.dumps({"x": object})
    with pytest.raises(TypeError) as theirs:
        json.dumps({"x": object})
    assert str(ours.value) == str(theirs.value)


def test_random_documents_round_trip_as_json_does():
    rng = random.Random(7)

    def make(depth):
        pick = rng.randrange(7 if depth < 4 else 4)
        if pick == 0:
            return rng.choice([None, True, False])
        if pick == 1:
            return rng.randrange(-(10**12), 10**12)
        if pick == 2:
            return rng.random() * 10 ** rng.randrange(-5, 5)
        if pick == 3:
            return "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(8)))
        if pick in (4, 5):
            return {f"k{i}\u00e9": make(depth + 1) for i in range(rng.randrange(4))}
        return [make(depth + 1) for _ in range(rng.randrange(4))]

    for _ in range(300):
        doc = make(0)
        for indent in (None, 4):
            text = startup.dumps(doc, indent=indent)
            assert text == json.dumps(doc, indent=indent)
            assert startup.loads(text) == json.loads(text)


def hook(pairs):
    return dict(pairs)


@pytest.mark.parametrize(
    "text",
    ['{"a": 1}', ' \n\t{"a": [1, 2, {"b": null}]}\r\n ', "[]", '"x"', "3", '{"a": NaN}', '{"a": 1, "a": 2}'],
)
def test_loads_is_json_loads(text):
    assert repr(startup.loads(text, object_pairs_hook=hook)) == repr(json.loads(text, object_pairs_hook=hook))


def reject(name):
    raise ValueError(f"constant {name}")


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', '{"a": 1}{}', "[1,]", "{'a': 1}", '{"a": "\x01"}', "nul", '{"a": Infinity}'])
def test_bad_documents_fail_with_jsons_own_error(text):
    with pytest.raises(ValueError) as ours:
        startup.loads(text, parse_constant=reject)
    with pytest.raises(ValueError) as theirs:
        json.loads(text, parse_constant=reject)
    assert type(ours.value) is type(theirs.value) and str(ours.value) == str(theirs.value)


def test_a_hook_that_refuses_refuses_as_with_json():
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)

    with pytest.raises(ValueError, match="duplicate key"):
        startup.loads('{"a": 1, "a": 2}', object_pairs_hook=no_duplicates)
