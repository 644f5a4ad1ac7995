"""``handover.ids.uuid4``: version 4 UUIDs as ``str(uuid.uuid4())`` gives them, never twice, not after a fork."""

from __future__ import annotations

import os
import uuid

from handover import ids


def test_uuid4_is_a_version_4_uuid_text_and_never_repeats() -> None:
    made = [ids.uuid4() for _ in range(3 * 256 + 5)]  # more than one buffer
    assert len(set(made)) == len(made)
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_a_forked_child_does_not_hand_out_its_parents_next_ids() -> None:
    ids.uuid4()  # the parent's buffer is filled
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, "\n".join(ids.uuid4() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split("\n"))
    os.waitpid(pid, 0)
    parent = {ids.uuid4() for _ in range(10)}
    assert len(child) == 10 and not child & parent
