"""The build report (pipelines/report/, `vidcurate report OUT`): counts, plots, samples, escaping."""
from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import index_table, rejects_table, run_cli, shard_samples
from vidcurate.pipelines.report import write_report
from vidcurate.schemas import INDEX, REJECT

PLOTS = ("stage-counts", "durations", "caption-words", "scores", "teachers", "stage-seconds")
EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


def plot_ids(page: str) -> set[str]:
    png = r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"'
    return set(re.findall(r'<figure id="plot-([\w-]+)"><img alt="[^"]*" ' + png, page))


def report_of(out) -> str:
    done = run_cli("report", str(out))
    assert done.returncode == 0, done.stderr
    path = done.stdout.strip().splitlines()[-1]
    assert os.path.samefile(path, os.path.join(out, "report.html"))
    return open(path, encoding="utf-8").read()


@pytest.fixture(scope="module")
def split_build(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("split") / "out"
    done = run_cli("split", str(corpus["compilation"]), "--output", str(out), "--preset", "panda70m-code")
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_report_of_the_default_build_has_counts_plots_and_every_sample(default_build):
    out = default_build["out"]
    assert default_build["process"].returncode == 0, default_build["process"].stderr
    page = report_of(out)
    index, rejects = index_table(out), rejects_table(out)
    assert f'<td id="n-clips">{len(index)}</td>' in page
    assert f'<td id="n-videos">{len({r["uri"] for r in index} | {r["uri"] for r in rejects})}</td>' in page
    for r in rejects:  # every reject reason, in the rejects table with its stage
        assert f"<td>{html.escape(r['stage'])}</td><td>{html.escape(r['reason'])}</td>" in page
    assert plot_ids(page) == set(PLOTS)
    stats = json.load(open(os.path.join(out, "stats.json")))["counters"]
    assert f"<tr><td>probe</td><td>{stats['probe.records_in']}</td><td>{stats['probe.records_out']}</td>" in page
    assert len(index) <= 12  # the corpus is small: every clip is a sample card
    assert page.count('<div class="card">') == len(index)
    assert page.count('src="data:image/jpeg;base64,') == len(index)  # a middle-frame thumbnail each
    for row in index:
        assert html.escape(row["caption"]) in page and row["clip_id"] in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script" not in page


@pytest.mark.slow
def test_report_reads_teacher_statistics_from_a_few_shards_and_says_how_many(default_build, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(default_build["out"], out)
    index = index_table(out)
    shards = {r["shard"] for r in index}
    assert len(shards) > 1

    def candidates_per_teacher(page: str) -> int:
        table = page.split('<table class="teachers">', 1)[1].split("</table>", 1)[0]
        return sum(int(n) for n in re.findall(r"<tr><td>[^<]*</td><td>\d+</td><td>[^<]*</td><td>(\d+)</td>", table))

    done = run_cli("report", str(out), "--samples", "1", "--scan-clips", "1")
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text(encoding="utf-8")
    # The one sample clip's shard is read first; it holds at least one clip, so it is the only one read.
    first = [r for r in index if r["shard"] == index[0]["shard"]]
    clips = f"{len(first)} clip{'' if len(first) == 1 else 's'}"
    assert f"Candidate statistics (this section and the candidate scores above) are from {clips} in 1 of " \
           f"{len(shards)} shards" in page
    assert candidates_per_teacher(page) == sum(r["num_candidates"] for r in first)
    assert f'<td id="n-clips">{len(index)}</td>' in page  # totals still count every clip

    done = run_cli("report", str(out), "--scan-clips", "0")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Candidate statistics" not in page
    assert candidates_per_teacher(page) == sum(r["num_candidates"] for r in index)


def test_report_of_a_split_only_build_says_there_are_no_captions(split_build):
    page = report_of(split_build)
    index = index_table(split_build)
    assert index and all(r["caption"] is None for r in index)
    assert f'<td id="n-clips">{len(index)}</td>' in page and "split-only build" in page
    assert plot_ids(page) == {"stage-counts", "durations", "stage-seconds"}
    assert page.count('<div class="card">') == len(index) and "(no caption)" in page


def test_captions_and_candidates_are_html_escaped(split_build, tmp_path):
    out = tmp_path / "evil"
    shutil.copytree(split_build, out)
    rows = index_table(out)
    victim = rows[0]
    victim.update(caption=EVIL, caption_teacher="metadata_teacher", score=0.5, num_candidates=1)
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(out / "index.parquet")), out / "index.parquet")
    shard = out / "shards" / victim["shard"]
    members = []
    with tarfile.open(shard) as tar:
        for m in tar:
            data = tar.extractfile(m).read()
            if m.name == f"{victim['key']}.json":
                meta = json.loads(data)
                meta["caption"] = EVIL
                meta["source"]["title"] = "</div><b>title</b>"
                meta["candidates"] = [{"teacher": "metadata_teacher\"><x>", "modality": "M", "text": EVIL,
                                       "score": 0.5}]
                data = json.dumps(meta).encode()
            members.append((m.name, data))
    with tarfile.open(shard, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    page = open(write_report(out), encoding="utf-8").read()
    assert "<script" not in page and "<img src=x" not in page and "<x>" not in page and "<b>title" not in page
    assert page.count(html.escape(EVIL)) >= 2  # the chosen caption and its candidate
    assert "&lt;/div&gt;&lt;b&gt;title&lt;/b&gt;" in page and "metadata_teacher&quot;&gt;&lt;x&gt;" in page


def test_markup_in_titles_reject_details_and_the_output_path_is_escaped_by_the_template(corpus, tmp_path):
    """Text from a manifest reaches the page only as text: a built dataset, not an edited one."""
    title = '<script>alert(1)</script> <b>bold</b> 1 < 2 > 0 & "quotes" &lt;script&gt;alert(2)&lt;/script&gt;'
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"uri": str(corpus["compilation"]), "title": title}) + "\n"
                        + json.dumps({"uri": str(tmp_path / "<b>gone</b>.mp4")}) + "\n")
    out = tmp_path / 'a&b <i>"out"</i>'
    done = run_cli("build", "--input", str(manifest), "--output", str(out), "--config", "split",
                   "--max-failure-ratio", "0.9")
    assert done.returncode == 0, done.stderr
    stored = {json.loads(s["json"])["source"]["title"] for s in shard_samples(out).values()}
    assert len(stored) == 1
    stored = stored.pop()  # as the inputs reader kept it (today: unchanged); it still holds '<', '&' and '"'
    assert '1 < 2 > 0 & "quotes"' in stored
    detail = next(r["detail"] for r in rejects_table(out) if r["reason"] == "file_not_found")
    assert "<b>gone</b>" in detail
    for page in (open(out / "report.html", encoding="utf-8").read(), report_of(out)):  # by the build, by the CLI
        assert "<script" not in page and "<b>" not in page and "<i>" not in page
        assert f'<div class="muted">title: {html.escape(stored)}</div>' in page
        assert "1 &lt; 2 &gt; 0 &amp; &quot;quotes&quot;" in page and "&lt;script&gt;alert(" in page
        assert f"<td>{html.escape(detail)}</td>" in page and "&lt;b&gt;gone&lt;/b&gt;" in page
        assert f"<title>vidcurate report: {html.escape(out.name)}</title>" in page
        assert "a&amp;b &lt;i&gt;&quot;out&quot;&lt;/i&gt;" in page


def test_a_build_with_no_clips_gets_a_report_that_says_so(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    pq.write_table(INDEX.empty_table(), out / "index.parquet")
    pq.write_table(pa.Table.from_pylist([{"uri": "/v/a.mp4", "video_id": "a", "clip_id": None, "stage": "probe",
                                          "reason": "empty_file", "detail": "0 bytes", "transient": False}],
                                        schema=REJECT), out / "rejects.parquet")
    (out / "stats.json").write_text(json.dumps({"counters": {"probe.records_in": 1, "probe.rejected.empty_file": 1},
                                                "seconds": {"probe.process": 0.01}}))
    page = report_of(out)
    assert "This build has no clips" in page and '<td id="n-clips">0</td>' in page
    assert "<td>probe</td><td>empty_file</td>" in page
    assert plot_ids(page) == {"stage-counts", "stage-seconds"}


@pytest.mark.parametrize("case", ["missing", "file", "not_a_build", "broken_index"])
def test_a_missing_or_invalid_out_is_a_clear_error(tmp_path, case):
    target = tmp_path / "out"
    if case == "file":
        target.write_text("x")
    elif case == "not_a_build":
        target.mkdir()
    elif case == "broken_index":
        target.mkdir()
        (target / "index.parquet").write_text("not parquet")
    done = run_cli("report", str(target))
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert str(target) in done.stderr
    assert not (target / "report.html").exists() if target.is_dir() else True
