"""The broker's id index (broker/index.py) behaves as one dict of every held message, whatever
the ids look like and however a batch's ids fall across its 16 ms windows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from service.broker.index import WINDOW_CHARS, IdIndex
from service.model import NO_HEADERS, Message, Status, new_id


def message(mid: str) -> Message:
    return Message(mid, "q", Status.QUEUED, b"{}", NO_HEADERS, 0, 0.0)


def test_a_batch_made_at_once_lands_in_one_window_and_reads_back() -> None:
    index = IdIndex()
    ids = [new_id() for _ in range(1000)]
    msgs = [message(mid) for mid in ids]
    index.add_all(msgs)
    assert len(index) == 1000
    assert all(index[mid] is msg for mid, msg in zip(ids, msgs, strict=True))
    assert list(index.values()) == msgs
    assert len(index._windows) <= 2  # made within 16 ms, or straddling one edge


def test_a_batch_across_windows_is_filed_by_each_id() -> None:
    index = IdIndex()
    # Same first and last window, another in between (a clock that stepped back and on):
    # the index must not trust the ends alone.
    ids = ["0190aaaa-bb1b-7000", "0190aaaa-bb2b-7000", "0190aaaa-bb1b-7001"]
    index.add_all([message(mid) for mid in ids])
    assert [index.get(mid).id for mid in ids] == ids  # type: ignore[union-attr]
    assert sorted(index._windows) == ["0190aaaa-bb1", "0190aaaa-bb2"]


def test_ids_of_any_shape_work_and_emptied_windows_go() -> None:
    index = IdIndex()
    for mid in ("", "x", "short-id", "a" * 40):
        index[mid] = message(mid)
    assert len(index) == 4
    assert index.get("nope") is None
    assert index.get("a" * 12) is None  # the window of "a" * 40, not an id in it
    for mid in ("", "x", "short-id", "a" * 40):
        assert index.pop(mid) is not None
    assert index.pop("x") is None
    assert len(index) == 0 and index._windows == {}


def test_replacing_a_message_keeps_the_count() -> None:
    index = IdIndex()
    mid = new_id()
    index[mid] = message(mid)
    replacement = message(mid)
    index[mid] = replacement
    assert len(index) == 1 and index[mid] is replacement


ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "add_all", "pop"]),
        # Ids sharing few prefixes, so windows fill, straddle and empty.
        st.lists(
            st.builds(
                lambda window, rest: window + rest,
                st.sampled_from(["0190aaaa-bb1b", "0190aaaa-bb2b", "zz"]),
                st.text("0123456789abcdef-", max_size=4),
            ),
            min_size=0,
            max_size=6,
        ),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_the_index_matches_a_plain_dict(steps: list[tuple[str, list[str]]]) -> None:
    index, model = IdIndex(), {}
    for op, ids in steps:
        if op == "set":
            for mid in ids:
                index[mid] = model[mid] = message(mid)
        elif op == "add_all":
            msgs = [message(mid) for mid in ids]
            index.add_all(msgs)
            model.update(zip(ids, msgs, strict=True))
        else:
            for mid in ids:
                assert index.pop(mid) is model.pop(mid, None)
        assert len(index) == len(model)
        assert {m.id: m for m in index.values()} == model
        assert all(index.get(mid) is msg for mid, msg in model.items())
        assert all(len(w) > 0 for w in index._windows.values())
        assert all(k == mid[:WINDOW_CHARS] for k, w in index._windows.items() for mid in w)
