"""Camera segments as parts of one clip: a person's boxes either side of a cut link them; parts chain."""

from __future__ import annotations

from worker import live_join
from worker.pipeline.decode import Frame


def _out(first: int, frames: int, head=(), tail=()) -> dict:
    return {"first_frame": first, "frames": frames, "head": [list(h) for h in head],
            "tail": [list(t) for t in tail]}


def test_a_face_either_side_of_a_cut_is_linked_one_to_one():
    before = _out(0, 300, tail=[
        (297, [[100, 100, 150, 150], [400, 80, 440, 120]], [1, 2]),
        (298, [[101, 100, 151, 150]], [1]),  # 2 was last seen on 297
        (299, [[102, 101, 152, 151], [10, 10, 30, 30]], [1, -1])])  # an unconfirmed face: no id
    after = _out(300, 300, head=[
        (300, [[103, 101, 153, 151]], [-1]),  # the new part's tracker confirms its tracks a few frames in
        (302, [[104, 102, 154, 152], [405, 82, 445, 122], [600, 300, 640, 340]], [1001, 1002, 1003]),
        (303, [[250, 250, 300, 300]], [1001])])  # later boxes of a track do not count: its first does
    assert live_join.link(before, after) == {1001: 1, 1002: 2}
    # Someone who walked into another's place is not linked to them: boxes must overlap enough.
    moved = _out(300, 300, head=[(300, [[140, 100, 190, 150]], [1001])])
    assert live_join.link(before, moved) == {}
    assert live_join.link(before, _out(300, 300)) == {}


def test_links_chain_across_cuts_and_parts_must_follow_each_other():
    assert live_join.chain([{1001: 1}, {2001: 1001, 2002: 1005}]) == {1001: 1, 2001: 1, 2002: 1005}
    a, b = _out(0, 300), _out(300, 250)
    assert live_join.follows(a, b)
    assert not live_join.follows(a, _out(301, 250))  # a frame lost between them
    assert not live_join.follows(_out(0, 0), _out(0, 250))  # a new clip (another picture size)


def test_a_part_is_numbered_from_its_place_in_the_clip():
    frames = (Frame(index=i, time_s=i / 30, image=None) for i in range(3))
    assert [f.index for f in live_join._numbered(frames, 600)] == [600, 601, 602]
