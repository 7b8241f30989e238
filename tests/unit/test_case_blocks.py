"""Case blocks extracted from form trees, as commcare-api.md describes them."""

import json

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from data_explorer.loaders.commcare.forms import ACTIONS, block_rows, find_case_blocks, form_row
from data_explorer.loaders.errors import MalformedResponse

TREE = {
    "#type": "data",
    "@name": "Case Update",
    "@xmlns": "http://openrosa.org/formdesigner/4B1B717C",
    "case": {"@case_id": "top", "@xmlns": "http://commcarehq.org/case/transaction/v2", "update": {"text": "TEST", "intval": "5"}},
    "subcase_0": {
        "case": {
            "@case_id": "subcaseid",
            "create": {"case_type": "child", "owner_id": "o1", "case_name": "hello"},
            "update": {"dob": "2011-03-21"},
            "index": {"parent": {"@case_type": "household", "#text": "some_parent"}},
        }
    },
    "array_cases": [{"case": {"@case_id": "a1", "update": {}}}, {"case": {"@case_id": "a2", "close": ""}}],
    "group": {"repeat_single": {"case": {"@case_id": "r1", "index": "", "update": {"x": "ü"}}}},
    "ext": {"case": {"@case_id": "e1", "index": {"host": {"@case_type": "patient", "@relationship": "extension", "#text": "p1"}}}},
    "listed": {"case": [{"@case_id": "l1", "close": None}, "", {"@case_id": "l2", "update": {"y": "1"}}]},
    # CaseXML 1.0: the id and date as elements, the create action's type as case_type_id
    "v1": {"case": {"case_id": "v1a", "date_modified": "2012-09-29T19:10:00",
                    "create": {"case_type_id": "old", "case_name": "legacy", "user_id": "u1"}, "update": {"z": "2"}}},
    "v1_repeat": [{"case": {"case_id": "v1b", "close": ""}}],
    # a case element without an id is not a block, and CommCare searches nothing inside it
    "no_id": {"case": {"update": {"q": "1"}, "nested": {"case": {"@case_id": "hidden", "update": {}}}}},
    "meta": {"@xmlns": "http://openrosa.org/jr/xforms", "userID": "u1"},
}


def _case_id(block: dict) -> str:
    return block.get("@case_id") or block["case_id"]


def test_every_block_is_found_in_document_order():
    paths = [(path, _case_id(block)) for path, block in find_case_blocks(TREE)]
    assert paths == [
        ("form.case", "top"),
        ("form.subcase_0.case", "subcaseid"),
        ("form.array_cases[0].case", "a1"),
        ("form.array_cases[1].case", "a2"),
        ("form.group.repeat_single.case", "r1"),
        ("form.ext.case", "e1"),
        ("form.listed.case[0]", "l1"),
        ("form.listed.case[2]", "l2"),
        ("form.v1.case", "v1a"),
        ("form.v1_repeat[0].case", "v1b"),
    ]


def test_each_action_becomes_a_row():
    rows = block_rows("f1", TREE)
    actions = [(r[3], r[4]) for r in rows]
    assert actions == [
        ("top", "update"),
        ("subcaseid", "create"),
        ("subcaseid", "update"),
        ("subcaseid", "index"),
        ("a1", "update"),
        ("a2", "close"),
        ("r1", "update"),  # the empty index "" carries nothing
        ("e1", "index"),
        ("l1", "close"),
        ("l2", "update"),
        ("v1a", "create"),
        ("v1a", "update"),
        ("v1b", "close"),
    ]
    by_key = {(r[3], r[4]): r for r in rows}
    assert by_key[("subcaseid", "create")][5] == "child"
    assert by_key[("v1a", "create")][5] == by_key[("v1a", "update")][5] == "old"  # 1.0's case_type_id
    assert json.loads(by_key[("subcaseid", "index")][6]) == {
        "parent": {"case_id": "some_parent", "case_type": "household", "relationship": "child"}
    }
    assert json.loads(by_key[("e1", "index")][6])["host"]["relationship"] == "extension"
    assert json.loads(by_key[("r1", "update")][6]) == {"x": "ü"}
    assert len({(r[1], r[4]) for r in rows}) == len(rows)  # primary key holds


def test_form_row_reads_metadata_and_keeps_the_tree():
    form = {
        "id": "f1", "app_id": "app", "build_id": "b", "received_on": "2024-01-01T00:00:00Z",
        "server_modified_on": "2024-01-01T00:00:01.5Z", "indexed_on": "2024-01-01T00:00:02.000001",
        "archived": False, "form": TREE,
        "metadata": {"userID": "u1", "username": "w1", "timeStart": "2024-01-01T00:00:00", "timeEnd": "2024-01-01T00:01:00", "deviceID": "d", "appVersion": "v"},
    }
    row = form_row(form)
    assert row[0] == "f1" and row[1] == TREE["@xmlns"] and row[2] == "Case Update"
    assert row[9:11] == ("u1", "w1")
    assert json.loads(row[15]) == TREE


@pytest.mark.parametrize(
    "form, message",
    [
        ({"form": {}}, "has no id"),
        ({"id": "f", "indexed_on": "2024-01-01", "form": "x"}, "form tree"),
        ({"id": "f", "indexed_on": "soon", "form": {}}, "not a timestamp"),
        ({"id": "f", "indexed_on": "2024-01-01", "form": {}, "received_on": 5}, "received_on"),
    ],
)
def test_malformed_forms_are_named(form, message):
    with pytest.raises(MalformedResponse, match=message):
        form_row(form)


@pytest.mark.parametrize("block, field", [({"@case_id": "", "update": {}}, "@case_id"),
                                          ({"case_id": {"#text": "x"}}, "case_id"),
                                          ({"@case_id": None, "case_id": "x"}, "@case_id")])
def test_a_block_without_a_case_id_is_malformed(block, field):
    """The 2.0 attribute decides where there is one, as CommCare decides the version by it."""
    with pytest.raises(MalformedResponse, match=f"has {field} "):
        block_rows("f", {"case": block})


def test_hostile_depth_is_refused():
    tree: dict = {}
    node = tree
    for _ in range(200):
        node["g"] = {}
        node = node["g"]
    with pytest.raises(MalformedResponse, match="deeper"):
        block_rows("f", tree)


_ATOMS = st.one_of(st.none(), st.booleans(), st.integers(), st.sampled_from(["", "x", "ü"]))
_KEYS = st.sampled_from(["case", "create", "update", "index", "close", "@case_id", "case_id", "case_type",
                         "case_type_id", "parent", "#text", "g"])
_ANY = st.recursive(_ATOMS, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
                    max_leaves=8)
_ACTIONS = {"create": st.one_of(_ATOMS, st.fixed_dictionaries({}, optional={"case_type": _ANY, "case_type_id": _ANY,
                                                                            "owner_id": _ANY})),
            "update": _ANY, "index": _ANY, "close": _ANY}
_IDS = st.sampled_from(["c1", "c2", "", None])
_BLOCKS = st.one_of(
    st.fixed_dictionaries({"@case_id": _IDS}, optional=_ACTIONS),  # CaseXML 2.0
    st.fixed_dictionaries({"case_id": _IDS}, optional={"date_modified": _ANY, **_ACTIONS}),  # CaseXML 1.0
)
_TREES = st.recursive(
    st.one_of(_ATOMS, _BLOCKS),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(_TREES)
def test_any_tree_gives_well_formed_rows_or_says_what_is_malformed(tree):
    """Hostile trees: either rows of known actions, each at most once per block and in a fixed order,
    with text or no case type and an object payload; or MalformedResponse. Never another error."""
    try:
        rows = block_rows("f", {"g": tree, "case": tree})
    except MalformedResponse:
        return
    by_block: dict[int, list[str]] = {}
    for form_id, block_index, path, case_id, action, case_type, payload in rows:
        assert form_id == "f" and path.startswith("form.") and isinstance(case_id, str) and case_id
        assert case_type is None or isinstance(case_type, str)
        assert isinstance(json.loads(payload), dict)
        by_block.setdefault(block_index, []).append(action)
    for actions in by_block.values():
        assert actions == [a for a in ACTIONS if a in actions]
