"""An attachment's identity, as properties over random pairs: common.attachment's key and common.records.

Earlier versions named a record "<containerID>-<ifname>.json": (pod-1, eth0) and
(pod, 1-eth0) shared it, and one pod's DEL or GC tore down the other's network.
These tests draw (containerID, ifname) pairs from everything the spec allows
('-', '.', '_', IDs up to 255 characters, interface names of up to 15 bytes with
'+', '=', punctuation and letters of any script), many of them built to collide
under the old naming, and check:

  * key() is injective, decode() inverts it (hashed keys: None), every key is a
    file name that fits NAME_MAX with its suffixes, and decode() refuses
    names key() never produces;
  * common.records.Records on a temporary directory: every pair reads back its
    own document, all() lists exactly what was written, removing one touches
    nothing else, a document under another pair's name is never trusted;
  * earlier versions' "<cid>-<ifname>.json" documents: one storing its pair is
    found for that pair only; one without a pair only when its name has one
    valid split; an ambiguous one never.

The draws use a seeded random.Random: the seed is in every failure message, and
CNI_IDENTITY_SEED=<seed> replays a run.
"""
import json
import os
import random
import re
import string

import pytest

from common import attachment, records
from common.skel import CONTAINER_ID_MAX, IFNAME_MAX, container_id_problem, ifname_problem

pytestmark = pytest.mark.unit

NAME_MAX = 255
# the longest suffix a state file gets: "<key>.json.tmp-<pid>" (pid_max is at most 4194304: 7 digits)
LONGEST_SUFFIX = ".json.tmp-4194304"
PAIRS_WANTED = 1500
EXPLICIT = [
    ("pod-1", "eth0"), ("pod", "1-eth0"),
    ("x", "a-b-c"), ("x-a", "b-c"), ("x-a-b", "c"),
    ("p.1", "eth0"), ("p", "1.eth0"), ("p_1", "eth0"), ("p", "_1-eth0"),
    ("c", "eth0"), ("c", "ETH0"), ("c", "eth0."), ("c0", "eth0"), ("c.0", "eth0"), ("c", "0-eth0"),
    ("u", "é"), ("u-1", "é"), ("u", "1-é"),
    ("f", "ﬁ"), ("f", "fi"), ("a", "а"),  # a ligature and its letters; Latin a and Cyrillic а
    ("e", "a+b"), ("e", "a=b"), ("e", "=x"), ("e", "+"), ("e", "-"), ("e", "_"), ("e", "..."),
    ("L" * 250 + "-1", "eth0"), ("L" * 250, "1-eth0"),  # both hashed
    ("M" * CONTAINER_ID_MAX, "e" * IFNAME_MAX), ("M" * CONTAINER_ID_MAX, "é" * 7),
]

CID_FIRST = string.ascii_letters + string.digits
CID_SEPARATORS = "-._"
IF_ASCII = string.ascii_letters + string.digits + "-._+=@#!~,;()[]{}^&*$'`?<>|"
IF_UNICODE = "éßøñüжЖдаαΩλıİﬁ中文字한글اب🙂€"  # letters of several scripts, a ligature, an emoji, a currency sign


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ.get("CNI_IDENTITY_SEED") or random.randrange(1 << 32))
    print(f"test_identity: seed {value} (CNI_IDENTITY_SEED={value} replays it)")
    return value


# --- drawing pairs -------------------------------------------------------------------------------


def _cid(rng: random.Random, length: int) -> str:
    rest = "".join(rng.choice(CID_SEPARATORS) if rng.random() < 0.35 else rng.choice(CID_FIRST) for _ in range(length - 1))
    return rng.choice(CID_FIRST) + rest


def _cid_length(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.6:
        return rng.randint(1, 16)
    if r < 0.75:
        return 64  # the length of a runtime's sandbox ID
    if r < 0.85:
        return rng.randint(17, 180)
    return rng.randint(181, CONTAINER_ID_MAX)  # around and past the key's length limit


def _ifname(rng: random.Random) -> str:
    budget = rng.randint(1, IFNAME_MAX)
    out = ""
    while True:
        r = rng.random()
        ch = rng.choice("-.") if r < 0.25 else rng.choice(IF_UNICODE) if r < 0.45 else rng.choice(IF_ASCII)
        if len((out + ch).encode()) > budget:
            return out or "x"
        out += ch


def _legacy_splits_of(name: str) -> list[tuple[str, str]]:
    return [(name[:i], name[i + 1:]) for i, ch in enumerate(name) if ch == "-"
            and not container_id_problem(name[:i]) and not ifname_problem(name[i + 1:])]


def draw_pairs(rng: random.Random, wanted: int = PAIRS_WANTED) -> list[tuple[str, str]]:
    """Valid (containerID, ifname) pairs; most share their old "<cid>-<ifname>" name with another drawn pair."""
    out: dict[tuple[str, str], None] = dict.fromkeys(EXPLICIT)
    while len(out) < wanted:
        mode = rng.random()
        if mode < 0.35:  # independent parts
            candidates = [(_cid(rng, _cid_length(rng)), _ifname(rng))]
        elif mode < 0.75:  # every valid split of one old-style name: (a-b, c-d), (a, b-c-d), (a-b-c, d)
            head = _cid(rng, _cid_length(rng))
            tail = "-".join(_ifname(rng).replace("-", "")[: rng.randint(1, 4)] or "x" for _ in range(rng.randint(1, 3)))
            candidates = _legacy_splits_of(f"{head}-{tail}")
        elif mode < 0.9:  # near misses: a separator moved, doubled, or swapped for another
            cid, ifname = _cid(rng, _cid_length(rng)), _ifname(rng)
            candidates = [(cid, ifname), (cid + rng.choice(CID_SEPARATORS), ifname), (cid, rng.choice("-._") + ifname),
                          (cid.replace("-", "."), ifname), (cid.replace("-", "_"), ifname.replace("-", ".")),
                          (cid + "-" + ifname[:1], ifname[1:])]
        else:  # long IDs with escapes in the ifname: the escaped key is just under or over its limit
            ifname = _ifname(rng)
            escaped = len(attachment.key("a", ifname)) - 2
            length = max(1, min(CONTAINER_ID_MAX, attachment.MAX_KEY - 1 - escaped + rng.randint(-2, 2)))
            cid = _cid(rng, length)
            candidates = [(cid, ifname), (cid + "-" + ifname, "eth0"), (cid[:-1] + "-", ifname)]
        for cid, ifname in candidates:
            if not container_id_problem(cid) and not ifname_problem(ifname):
                out[(cid, ifname)] = None
    pairs = list(out)
    for cid, ifname in pairs:  # the generator itself must stay inside the spec
        assert not container_id_problem(cid) and not ifname_problem(ifname), (cid, ifname)
    return pairs


@pytest.fixture(scope="module")
def pairs(seed) -> list[tuple[str, str]]:
    return draw_pairs(random.Random(seed))


def legacy_name(cid: str, ifname: str) -> str:
    return f"{cid}-{ifname}"


# --- the key ----------------------------------------------------------------------------------------


def test_the_draw_is_rich_enough(pairs, seed):
    """A property test is only as good as its draw: many pairs, many old-name collisions, hashed keys, every character class."""
    by_legacy: dict[str, list] = {}
    for p in pairs:
        by_legacy.setdefault(legacy_name(*p), []).append(p)
    colliding = sum(len(v) for v in by_legacy.values() if len(v) > 1)
    hashed = [p for p in pairs if attachment.key(*p).startswith(attachment.HASHED)]
    joined = "".join(c + i for c, i in pairs)
    assert len(pairs) >= 1000, seed
    assert colliding >= 300, f"seed {seed}: only {colliding} pairs share an old-style name"
    assert len(hashed) >= 50, f"seed {seed}: only {len(hashed)} hashed keys"
    assert max(len(c) for c, _ in pairs) == CONTAINER_ID_MAX
    assert max(len(i.encode()) for _, i in pairs) == IFNAME_MAX
    for ch in "-._+=" + "é中🙂":
        assert ch in joined, f"seed {seed}: no {ch!r} drawn"
    for pair in EXPLICIT:
        assert pair in pairs


def test_key_is_injective(pairs, seed):
    seen: dict[str, tuple[str, str]] = {}
    for p in pairs:
        k = attachment.key(*p)
        assert seen.setdefault(k, p) == p, f"seed {seed}: {p!r} and {seen[k]!r} share the key {k!r}"
        assert attachment.key(*p) == k, "key() must be deterministic"
    assert len(seen) == len(set(pairs))
    assert attachment.key("pod-1", "eth0") != attachment.key("pod", "1-eth0")
    assert legacy_name("pod-1", "eth0") == legacy_name("pod", "1-eth0")  # what the old naming did


def test_decode_inverts_key_and_hashed_keys_name_the_digest(pairs, seed):
    for p in pairs:
        k = attachment.key(*p)
        if k.startswith(attachment.HASHED):
            assert k == attachment.HASHED + attachment.digest(*p), (seed, p)
            assert attachment.decode(k) is None, (seed, p)
            # hashed exactly when the escaped form does not fit
            assert len(attachment._escape(p[0]) + ":" + attachment._escape(p[1])) > attachment.MAX_KEY, (seed, p)
        else:
            assert attachment.decode(k) == p, f"seed {seed}: decode({k!r}) != {p!r}"
            assert k.count(attachment.SEPARATOR) == 1, (seed, p, k)


def test_keys_are_file_names_that_fit_with_their_suffixes(pairs, seed):
    for p in pairs:
        k = attachment.key(*p)
        assert k and k.isascii() and k.isprintable(), (seed, p, k)
        assert "/" not in k and "\0" not in k and k not in (".", ".."), (seed, p, k)
        assert not k.startswith((".", "-")), f"seed {seed}: {k!r} would be a hidden file or read as an option"
        assert len(k) <= attachment.MAX_KEY, (seed, p, len(k))
        for suffix in (".json", ".lock", LONGEST_SUFFIX):
            assert len((k + suffix).encode()) <= NAME_MAX, (seed, p, suffix)


def _variants(k: str) -> list[str]:
    """Names close to a canonical key that key() never produces."""
    out = [k + attachment.SEPARATOR + "x", k.replace(attachment.SEPARATOR, ""), k.replace(attachment.SEPARATOR, "-", 1),
           attachment.SEPARATOR + k, k + " ", k + "/", "%41" + k]
    if "%" in k:
        out.append(re.sub(r"%([0-9A-F]{2})", lambda m: "%" + m.group(1).lower(), k))  # lower-case escapes
        out.append(k.replace("%", "%25", 1))  # an escaped escape
        out.append(k[: k.index("%")] + "%G" + k[k.index("%") + 2:])  # not hex
        out.append(k[: k.index("%") + 2])  # cut inside an escape
    for i, ch in enumerate(k):
        if ch in attachment.SAFE:
            out.append(k[:i] + f"%{ord(ch):02X}" + k[i + 1:])  # a safe character escaped anyway
            break
    if k.isascii():
        out.append(k.replace("-", "é", 1) if "-" in k else k + "é")  # a raw non-ASCII character
    return [v for v in out if v != k]


def test_decode_refuses_names_key_never_produces(pairs, seed):
    rng = random.Random(seed + 1)
    canonical = {attachment.key(*p) for p in pairs}
    for p in rng.sample(pairs, 400) + EXPLICIT:
        k = attachment.key(*p)
        if k.startswith(attachment.HASHED):
            continue
        for name in _variants(k):
            if name in canonical:
                continue
            try:
                got = attachment.decode(name)
            except ValueError:
                continue
            # a name decode() accepts must be the key of what it decodes to
            assert got is not None and attachment.key(*got) == name, f"seed {seed}: decode({name!r}) = {got!r}, not canonical"
            assert got != p, f"seed {seed}: {name!r} decodes to {p!r}, whose key is {k!r}"
    for name in ("", "eth0", "pod-1-eth0", "a:b:c", "=", "=" + "A" * 64, "=" + "0" * 63, "=" + "0" * 65, "=" + "g" * 64,
                 "%zz:eth0", "%FF:eth0", "pod:eth0 ", "pod:eth%0", "pod:%3a", "pod:%3A".lower(), "p%6Fd:eth0"):
        with pytest.raises(ValueError):
            attachment.decode(name)
    assert attachment.decode("=" + "0" * 64) is None  # well-formed hashed: the pair is read from the file


def test_key_stays_injective_beyond_the_spec(seed):
    """Inputs the plugins refuse (':', '%', '=' first, raw bytes' surrogates) still never share a key."""
    rng = random.Random(seed + 2)
    alphabet = "ab-:%=/._ \\\"é\0\udcff%3A%25"
    seen: dict[str, tuple[str, str]] = {}
    for _ in range(3000):
        p = ("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))), "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))))
        k = attachment.key(*p)
        assert seen.setdefault(k, p) == p, f"seed {seed}: {p!r} and {seen[k]!r} share {k!r}"
        if not k.startswith(attachment.HASHED):
            assert attachment.decode(k) == p
        assert "/" not in k and "\0" not in k


# --- records on a directory ---------------------------------------------------------------------------


def snapshot(directory: str) -> dict[str, tuple]:
    out = {}
    for entry in os.scandir(directory):
        st = entry.stat(follow_symlinks=False)
        out[entry.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def write_all(store: records.Records, pairs) -> dict[tuple[str, str], int]:
    index = {}
    for n, p in enumerate(pairs):
        with store.locked(*p, create=True) as entry:
            assert entry is not None and entry.read() is None, p
            entry.write({"n": n, "host_veth": f"veth{n:08x}"})
        index[p] = n
    return index


def test_records_keep_every_pair_apart(tmp_path, pairs, seed):
    store = records.Records(str(tmp_path / "state"), "net")
    index = write_all(store, pairs)
    directory = store.path
    names = os.listdir(directory)
    assert sorted(names) == sorted(attachment.key(*p) + ".json" for p in pairs), f"seed {seed}: one file per pair, no lock left"
    for p, n in index.items():
        doc = store.read(*p)
        assert doc is not None and doc["n"] == n and (doc["container_id"], doc["ifname"]) == p, f"seed {seed}: read({p!r}) = {doc!r}"
        with store.locked(*p, create=False) as entry:
            assert entry.read()["n"] == n
    listed = store.all()
    assert len(listed) == len(pairs), f"seed {seed}: all() listed {len(listed)} documents for {len(pairs)} pairs"
    assert {(d["container_id"], d["ifname"]): d["n"] for d in listed} == index, seed
    assert not [n for n in os.listdir(directory) if n.endswith(".lock")], "a lock file outlived its call"

    # removing one touches no other: its partners under the old naming first, then a random sample
    rng = random.Random(seed + 3)
    by_legacy: dict[str, list] = {}
    for p in pairs:
        by_legacy.setdefault(legacy_name(*p), []).append(p)
    victims = [group[0] for group in by_legacy.values() if len(group) > 1][:70]
    victims += rng.sample([p for p in pairs if p not in victims], 30)
    removed = set()
    for victim in victims:
        before = snapshot(directory)
        with store.locked(*victim, create=False) as entry:
            entry.remove()
        removed.add(victim)
        after = snapshot(directory)
        gone = attachment.key(*victim) + ".json"
        assert gone in before and set(before) - set(after) == {gone}, f"seed {seed}: removing {victim!r} removed {sorted(set(before) - set(after))}"
        assert {k: v for k, v in before.items() if k != gone} == after, f"seed {seed}: removing {victim!r} changed another file"
        assert store.read(*victim) is None
        for partner in by_legacy[legacy_name(*victim)]:
            if partner not in removed:
                assert store.read(*partner)["n"] == index[partner], f"seed {seed}: removing {victim!r} lost {partner!r}"
    assert {(d["container_id"], d["ifname"]) for d in store.all()} == set(pairs) - removed


def test_a_document_under_another_pairs_name_is_never_trusted(tmp_path, pairs, seed):
    rng = random.Random(seed + 4)
    store = records.Records(str(tmp_path / "state"), "net")
    colliding = [("pod-1", "eth0"), ("pod", "1-eth0")]  # moved below on their own: kept out of the random part
    sample = rng.sample([p for p in pairs if p not in colliding], 60) + colliding
    index = write_all(store, sample)
    directory = store.path
    # move some documents over their neighbours' names: the names now lie about the pair inside
    liars = {}
    for a, b in zip(sample[0:20:2], sample[1:20:2]):
        os.replace(os.path.join(directory, attachment.key(*a) + ".json"), os.path.join(directory, attachment.key(*b) + ".json"))
        liars[b] = a
    os.replace(os.path.join(directory, attachment.key("pod-1", "eth0") + ".json"), os.path.join(directory, attachment.key("pod", "1-eth0") + ".json"))
    liars[("pod", "1-eth0")] = ("pod-1", "eth0")
    # and a short pair's document spelled as a hashed key
    short = next(p for p in sample[20:-2] if not attachment.key(*p).startswith(attachment.HASHED))
    os.replace(os.path.join(directory, attachment.key(*short) + ".json"), os.path.join(directory, attachment.HASHED + attachment.digest(*short) + ".json"))
    moved = set(liars.values()) | {short}
    for p in sample:
        doc = store.read(*p)
        if p in liars or p in moved:
            assert doc is None, f"seed {seed}: read({p!r}) trusted {doc!r}"
        else:
            assert doc["n"] == index[p]
    listed = {(d["container_id"], d["ifname"]) for d in store.all()}
    assert listed == set(sample) - set(liars) - moved, seed


# --- earlier versions' documents ---------------------------------------------------------------------------


def _put(directory: str, name: str, doc: dict) -> None:
    with open(os.path.join(directory, name), "w") as f:
        json.dump(doc, f)


def test_legacy_documents_are_found_only_for_their_own_pair(tmp_path):
    store = records.Records(str(tmp_path / "state"), "net")
    with store.locked("seed", "eth0", create=True) as entry:  # creates the directory
        entry.write({})
    d = store.path
    _put(d, "pod-1-eth0.json", {"container_id": "pod-1", "ifname": "eth0", "host_veth": "vethA"})  # stores its pair
    _put(d, "x-a-b-c.json", {"host_veth": "vethB"})  # no pair; (x, a-b-c), (x-a, b-c), (x-a-b, c): ambiguous
    _put(d, "web-eth0.json", {"host_veth": "vethC"})  # no pair, one split
    _put(d, "q-1-abcdefghijklmn.json", {"host_veth": "vethD"})  # "1-abcdefghijklmn" is 16 bytes: one split
    _put(d, "r-é-x.json", {"host_veth": "vethE"})  # "r-é" is no container ID: one split
    _put(d, "s-eth0.json", {"container_id": "t", "ifname": "eth0", "host_veth": "vethF"})  # stores another pair than its name
    assert store.read("pod-1", "eth0")["host_veth"] == "vethA"
    assert store.read("pod", "1-eth0") is None
    for pair in (("x", "a-b-c"), ("x-a", "b-c"), ("x-a-b", "c")):
        assert store.read(*pair) is None, pair
    assert store.read("web", "eth0")["host_veth"] == "vethC"
    assert store.read("q-1", "abcdefghijklmn")["host_veth"] == "vethD"
    assert store.read("r", "é-x")["host_veth"] == "vethE"
    assert store.read("s", "eth0") is None and store.read("t", "eth0") is None
    listed = sorted((doc["container_id"], doc["ifname"], doc.get("host_veth")) for doc in store.all())
    assert listed == sorted([("seed", "eth0", None), ("pod-1", "eth0", "vethA"), ("web", "eth0", "vethC"),
                             ("q-1", "abcdefghijklmn", "vethD"), ("r", "é-x", "vethE")])
    # the partner's own record is new-style; removing it leaves the legacy document of (pod-1, eth0) alone
    with store.locked("pod", "1-eth0", create=False) as entry:
        entry.write({"host_veth": "vethG"})
    with store.locked("pod", "1-eth0", create=False) as entry:
        entry.remove()
    assert os.path.exists(os.path.join(d, "pod-1-eth0.json")) and store.read("pod-1", "eth0")["host_veth"] == "vethA"
    # removing (pod-1, eth0) removes its legacy document; the ambiguous one stays for the runtime's DEL
    with store.locked("pod-1", "eth0", create=False) as entry:
        entry.remove()
    assert not os.path.exists(os.path.join(d, "pod-1-eth0.json"))
    with store.locked("x-a", "b-c", create=False) as entry:
        entry.remove()
    assert os.path.exists(os.path.join(d, "x-a-b-c.json"))


def test_legacy_documents_over_random_pairs(tmp_path, pairs, seed):
    """Every old-style name written for the draw: found for the one pair it can stand for, or for the pair it stores."""
    rng = random.Random(seed + 5)
    by_name: dict[str, list] = {}
    for p in pairs:
        name = legacy_name(*p) + ".json"
        if len(name.encode()) <= NAME_MAX:
            by_name.setdefault(name, []).append(p)
    names = list(by_name)
    rng.shuffle(names)
    with_pair = set(names[: len(names) // 2])
    for stores_pair, root in ((True, tmp_path / "with"), (False, tmp_path / "without")):
        store = records.Records(str(root), "net")
        with store.locked("seed", "eth0", create=True) as entry:
            entry.write({})
        with store.locked("seed", "eth0", create=False) as entry:
            entry.remove()
        expected: dict[tuple[str, str], str] = {}
        for name in (with_pair if stores_pair else set(names) - with_pair):
            owner = rng.choice(by_name[name])
            doc = {"host_veth": name}
            if stores_pair:
                doc.update(container_id=owner[0], ifname=owner[1])
                expected[owner] = name
            else:
                splits = attachment.legacy_splits(name[:-5])
                assert set(by_name[name]) <= set(splits), (seed, name)  # the draw's pairs are among the name's readings
                if len(splits) == 1:
                    expected[splits[0]] = name
            _put(store.path, name, doc)
        for name in (with_pair if stores_pair else set(names) - with_pair):
            for p in by_name[name]:
                doc = store.read(*p)
                if p in expected:
                    assert doc is not None and doc["host_veth"] == expected[p], f"seed {seed}: {name!r} not found for {p!r}"
                    assert (doc["container_id"], doc["ifname"]) == p
                else:
                    assert doc is None, f"seed {seed}: {name!r} ({'with' if stores_pair else 'without'} a pair) was read for {p!r}: {doc!r}"
        listed = {(d["container_id"], d["ifname"]): d["host_veth"] for d in store.all()}
        assert listed == expected, f"seed {seed}: all() of {'paired' if stores_pair else 'pairless'} legacy documents"


@pytest.mark.unit
def test_a_pair_under_both_its_names_is_listed_once(tmp_path):
    """An upgrade can leave an earlier version's "<cid>-<ifname>.json" beside the current name: one attachment, one entry."""
    import json as _json

    from common import attachment
    from common.records import Records

    records = Records(str(tmp_path), "net")
    with records.locked("pod", "eth0", create=True) as entry:
        entry.write({"host_veth": "vethnew"})
    (tmp_path / "net" / "pod-eth0.json").write_text(_json.dumps({"container_id": "pod", "ifname": "eth0", "host_veth": "vethold"}))
    assert sorted(os.listdir(tmp_path / "net")) == sorted([attachment.key("pod", "eth0") + ".json", "pod-eth0.json"])
    docs = records.all()
    assert [(d["container_id"], d["ifname"], d["host_veth"]) for d in docs] == [("pod", "eth0", "vethnew")]
