"""The clip pass (select and refine over a finished build's clips): a worker that cannot see OUT
rejects its clips as out_unreachable with its host named, and the pass stops instead of writing a
version of unread clips."""
from __future__ import annotations

import socket

import pytest

from conftest import run_cli, synth_world
from vidcurate.operators.write.build_clips import ReadBuildClips
from vidcurate.pipelines.versions.clip_pass import ClipPassError, clip_groups


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip-pass") / "world"
    synth_world(out, "--clips", "6", "--seed", "5")
    return out


def test_a_worker_that_cannot_see_out_rejects_its_clips_naming_its_host(world, tmp_path):
    group = next(clip_groups(str(world)))
    seen = ReadBuildClips(out=str(world)).process_record(group)
    assert [r["clip_id"] for r in seen] == [c["clip_id"] for c in group["clips"]]
    assert all(r.get("status") != "rejected" and r["mp4"] for r in seen)

    elsewhere = ReadBuildClips(out=str(tmp_path / "only-on-the-driver")).process_record(group)
    assert len(elsewhere) == len(group["clips"])
    assert all(r["status"] == "rejected" and r["error_reason"] == "out_unreachable" for r in elsewhere)
    assert socket.gethostname() in elsewhere[0]["error_detail"] and "shared file system" in elsewhere[0]["error_detail"]


def test_select_stops_with_the_reason_when_workers_cannot_read_out(world, monkeypatch):
    """The local runner's worker is this process, so seeing OUT is switched off here to stand for a
    Ray worker on another machine: `select` fails and writes no version."""
    from vidcurate.operators.write.versions import VersionError, list_versions
    from vidcurate.pipelines.versions.select import reselect

    before = list_versions(str(world))
    monkeypatch.setattr(ReadBuildClips, "_out_reachable", lambda self: False)
    with pytest.raises(VersionError, match="6 clips could not be read on the local runner's workers: .*not reachable "
                                           "from host"):
        reselect(str(world), "consensus", "never-written")
    assert list_versions(str(world)) == before
    monkeypatch.undo()
    done = run_cli("select", str(world), "--version", "written")
    assert done.returncode == 0 and "6 of 6 clips captioned" in done.stdout, done.stderr
