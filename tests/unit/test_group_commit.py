"""Group commit: each submitter returns only once its item is written; writers share commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from campaignbot.delivery.group_commit import GroupCommit


async def test_items_submitted_during_a_commit_share_the_next_one() -> None:
    written: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: Sequence[int]) -> None:
        written.append(list(items))
        if len(written) == 1:
            await release.wait()  # the first commit is slow

    commits: GroupCommit[int] = GroupCommit(write)
    first = asyncio.create_task(commits.submit(0))
    await asyncio.sleep(0)
    others = [asyncio.create_task(commits.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    assert not first.done() and not any(t.done() for t in others)  # nobody returns early
    release.set()
    await asyncio.gather(first, *others)
    assert written == [[0], [1, 2, 3]]
    assert (commits.commits, commits.items) == (2, 4)


async def test_a_failed_commit_reaches_every_submitter_of_it() -> None:
    async def write(items: Sequence[int]) -> None:
        raise OSError("database is gone")

    commits: GroupCommit[int] = GroupCommit(write)
    results = await asyncio.gather(commits.submit(1), commits.submit(2), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results), results


async def test_a_cancelled_submitter_does_not_cancel_the_commit() -> None:
    done = asyncio.Event()

    async def write(items: Sequence[int]) -> None:
        await asyncio.sleep(0.01)
        done.set()

    commits: GroupCommit[int] = GroupCommit(write)
    task = asyncio.create_task(commits.submit(1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await commits.wait_idle()
    assert done.is_set()
