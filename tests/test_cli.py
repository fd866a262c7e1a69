"""The command line as a user meets it: help, configs, error messages and exit codes."""
from __future__ import annotations

import os

import pytest

from conftest import index_table, rejects_table, run_cli, shard_samples


def _every_command(group, path=()):
    import click

    yield list(path)
    for name, command in getattr(group, "commands", {}).items():
        yield from (_every_command(command, (*path, name)) if isinstance(command, click.Group)
                    else [[*path, name]])


def test_every_command_has_real_help():
    from click.testing import CliRunner

    from vidcurate.pipelines.cli import cli

    commands = list(_every_command(cli))
    assert len(commands) >= 20 and ["bench", "split"] in commands and ["select"] in commands
    for command in commands:  # in-process: one interpreter for all of them
        done = CliRunner().invoke(cli, [*command, "--help"], prog_name="vidcurate")
        assert done.exit_code == 0, (command, done.output)
        assert "Usage:" in done.output and len(done.output.splitlines()) > 5, command
    assert "--max-failure-ratio" in run_cli("build", "--help").stdout  # and as a user runs it


def test_config_prints_the_resolved_default_and_ops_describe_fields():
    done = run_cli("config")
    assert done.returncode == 0 and "op: split_shots" in done.stdout and "threshold: 25.0" in done.stdout
    done = run_cli("ops", "split_shots")
    assert done.returncode == 0
    assert "min_scene_len = 15" in done.stdout and "Panda-70M" in done.stdout
    assert run_cli("ops", "nope").returncode == 2


def test_bad_config_exits_2_naming_the_field(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  - op: probe\n  - op: split_shots\n    threshold: abc\n")
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2
    assert "step 2 (split_shots): field 'threshold'" in done.stderr and "Traceback" not in done.stderr
    config.write_text("source: mine\npipeline:\n  - op: probe\n")  # a key the loader sets itself
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2 and "unknown field 'source'" in done.stderr and "Traceback" not in done.stderr


def test_ops_gives_every_operator_its_own_description():
    from vidcurate.pipelines.build.registry import OPERATORS

    done = run_cli("ops")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == sorted(OPERATORS)
    descriptions = [line.split(":", 1)[1].strip() for line in lines]
    assert all(len(d.split()) >= 5 for d in descriptions), lines
    shared = {d for d in descriptions if descriptions.count(d) > 1}
    assert not shared, f"operators share a description: {shared}"
    assert "METHODS.md" not in done.stdout


def test_ops_shows_allowed_values_types_required_fields_and_readable_resources():
    done = run_cli("ops", "split_shots")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "  resources: 1 CPU, 0 GPU, batch 1 per worker\n" in out
    assert "  detector = 'content'  one of: content, adaptive, transnetv2  Shot detector.\n" in out
    assert "  preset = None  one of: panda70m, panda70m-code (or None)  " in out
    assert "  min_scene_len = 15  int >= 1  Minimum shot length" in out
    assert "  trim_fraction = 0.0  float >= 0, < 0.5  " in out
    done = run_cli("ops", "video_teacher")
    assert done.returncode == 0, done.stderr
    assert "  model (required)  str  Local folder or hub id" in done.stdout
    assert "  resources: 1 CPU, 0 GPU, batch 8 per worker\n" in done.stdout  # batch_size's default
    assert "  resources: 1 CPU, 0 GPU, batch 8, 0.5 GB memory per worker\n" in run_cli("ops", "ocr_teacher").stdout
    for shown in (out, done.stdout):
        assert "PydanticUndefined" not in shown and "Resources(" not in shown and "METHODS.md" not in shown
    done = run_cli("ops", "split_shot")
    assert done.returncode == 2 and "unknown operator 'split_shot' (did you mean 'split_shots'?)" in done.stderr


def test_no_operator_points_users_at_a_file_they_do_not_have():
    import sys

    from vidcurate.pipelines.build.registry import OPERATORS, operator_class

    for name in OPERATORS:
        cls = operator_class(name)
        texts = [sys.modules[cls.__module__].__doc__ or "", cls.__doc__ or ""]
        texts += [info.description or "" for info in cls.model_fields.values()]
        assert not [t for t in texts if "METHODS.md" in t], name


def test_config_with_an_unknown_name_lists_the_bundled_configs():
    from vidcurate.pipelines.build.config import bundled_configs

    done = run_cli("config", "nosuch")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    assert (f"no bundled config 'nosuch'; bundled: {', '.join(bundled_configs())} (or a path to a YAML file)"
            in done.stderr)
    assert {"default", "panda70m-gpu", "split"} <= set(bundled_configs())


def test_a_config_reports_every_bad_field_of_every_step_and_section(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text("pipeline:\n  - op: probe\n    min_duration: -1\n  - op: split_shots\n    threshold: abc\n"
                      "  - op: filter_motion\n    max_motion: 300\n"
                      "output:\n  open_shards: 0\nrun:\n  max_failure_ratio: 3\n")
    done = run_cli("config", str(config))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.removeprefix("error: ").splitlines()
    assert len(lines) == 5, done.stderr
    assert lines[0].startswith(f"{config}: pipeline step 1 (probe): field 'min_duration': ")
    assert lines[1].startswith(f"{config}: pipeline step 2 (split_shots): field 'threshold': ")
    assert lines[2].startswith(f"{config}: pipeline step 3 (filter_motion): field 'max_motion': ")
    assert lines[3].startswith(f"config {config}: field 'output.open_shards': ")
    assert lines[4].startswith(f"config {config}: field 'run.max_failure_ratio': ")
    # build refuses the same file with the same list, before touching any input
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2 and done.stderr.removeprefix("error: ").splitlines() == lines
    assert not (tmp_path / "out").exists()


def test_misspelt_fields_and_operators_get_a_did_you_mean(tmp_path):
    config = tmp_path / "typos.yaml"
    config.write_text("pipeline:\n  - op: probe\n  - op: split_shots\n    threshhold: 30\n  - op: split_shot\n"
                      "  - op: extract_clips\n    zzz: 1\noutput:\n  shard_max_sampels: 10\n")
    done = run_cli("config", str(config))
    assert done.returncode == 2
    assert (f"{config}: pipeline step 2 (split_shots): unknown field 'threshhold' (did you mean 'threshold'?)"
            in done.stderr)
    assert f"{config}: pipeline step 3: unknown operator 'split_shot' (did you mean 'split_shots'?); known: " \
        in done.stderr
    # nothing close: where the fields are listed instead
    assert ("step 4 (extract_clips): unknown field 'zzz' (`vidcurate ops extract_clips` lists its fields)"
            in done.stderr)
    assert "unknown field 'output.shard_max_sampels' (did you mean 'shard_max_samples'?)" in done.stderr


def test_missing_input_exits_2(tmp_path):
    done = run_cli("build", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "out"))
    assert done.returncode == 2 and "no such file or folder" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_build_failing_wholesale_stops_with_a_clear_message(tmp_path, corpus):
    folder = tmp_path / "bad"
    folder.mkdir()
    for name in corpus["bad"]:
        (folder / name).write_bytes((corpus["folder"] / name).read_bytes())
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(folder), "-o", str(out), "--verbose")
    assert done.returncode == 1
    # Fewer inputs than failure_ratio_min_inputs: judged once all are done, so it "failed", not "stopped".
    assert "failed: 4 of 4 inputs (100%) yielded no clip" in done.stderr
    assert "probe/unreadable_container (2)" in done.stderr and "probe/empty_file (1)" in done.stderr
    # The summary and what to do about the most common reason.
    assert "videos in:      4 (0 gave clips)" in done.stdout and "rejects:        4" in done.stdout
    assert "hint (probe/unreadable_container): the files are not videos or are damaged" in done.stderr
    # --verbose: a line per input as it is done, with its outcome.
    assert f"INFO {out}: 4 inputs, 4 to do (0 done by an earlier run" in done.stderr
    for name, (stage, reason) in corpus["bad"].items():
        assert f"{name}: 0 clips written; rejected: 1 {stage}/{reason}\n" in done.stderr, name
    # What was processed before the stop is still on disk, named and explained.
    assert {os.path.basename(r["uri"]) for r in rejects_table(out)} == set(corpus["bad"])
    # Re-running the same command resumes: nothing is redone, and the verdict is the same.
    again = run_cli("build", "-i", str(folder), "-o", str(out), "-v")
    assert again.returncode == 1 and ("nothing to do (every input was processed by an earlier run), and 4 of 4 "
                                      "inputs (100%) yielded no clip") in again.stderr
    assert "4 inputs, 0 to do (4 done by an earlier run" in again.stderr
    assert "(4 done by an earlier run, skipped; 0 of the others gave clips)" in again.stdout


@pytest.mark.slow
def test_silent_video_without_metadata_is_rejected_with_a_hint(tmp_path, corpus):
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(corpus["compilation"]), "-o", str(out), "--max-failure-ratio", "1")
    assert done.returncode == 0, done.stderr
    reasons = {r["reason"] for r in rejects_table(out)}
    assert reasons == {"too_short", "no_caption_candidates"}
    detail = next(r["detail"] for r in rejects_table(out) if r["reason"] == "no_caption_candidates")
    assert "metadata" in detail
    # With the default failure budget the one input fails the build: the summary, and the hint.
    failed = run_cli("build", "-i", str(corpus["compilation"]), "-o", str(tmp_path / "out2"))
    assert failed.returncode == 1 and "failed: 1 of 1 inputs (100%)" in failed.stderr
    assert "clips out:      0" in failed.stdout
    hint = "hint (consensus_selector/no_caption_candidates): no teacher wrote a caption"
    assert hint in failed.stderr and "vidcurate split" in failed.stderr and "frame_teacher" in failed.stderr


@pytest.mark.slow
def test_demo_builds_the_sample_dataset(tmp_path):
    out = tmp_path / "demo"
    done = run_cli("demo", "--output", str(out))
    assert done.returncode == 0, done.stderr
    # clips spread over up to output.open_shards = 4 shards (which ones: a hash of the clip ids,
    # and those hash the input paths, so the count varies with the folder)
    shards = len({r["shard"] for r in index_table(out)})
    assert f"clips out:      7 in {shards} shard(s)" in done.stdout and 1 <= shards <= 4, done.stdout
    assert "probe/unreadable_container" in done.stdout  # the deliberately truncated input
    assert os.path.exists(out / "index.parquet") and len(shard_samples(out)) == 7
    # The README's main command is re-runnable: a second demo replaces the first.
    assert run_cli("demo", "--output", str(out)).returncode == 0


def test_a_pipeline_that_cannot_make_samples_is_a_config_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  - op: probe\n  - op: split_shots\n")
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2
    assert "never produces 'mp4' (add extract_clips), 'caption' (add consensus_selector)" in done.stderr
    config.write_text("pipeline:\n  - op: probe\n  - op: speech_teacher\n")
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2
    assert "step 2 (speech_teacher) needs 'audio_pcm' (add extract_clips)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_output_problems_exit_2_and_never_destroy_a_previous_build(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "v.mp4").write_bytes(b"")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    done = run_cli("build", "-i", str(tmp_path / "in"), "-o", str(a_file))
    assert done.returncode == 2 and "is a file, not a folder" in done.stderr and "Traceback" not in done.stderr
    # Under a file, in /proc, in a folder that cannot be written: one line, exit 2, nothing done.
    unwritable = [a_file / "out", "/proc/vidcurate-out", "/sys/vidcurate-out"]
    if os.geteuid() != 0:  # root writes anywhere: a read-only folder only stops other users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        unwritable.append(locked / "out")
    for output in unwritable:
        done = run_cli("build", "-i", str(tmp_path / "in"), "-o", str(output))
        assert done.returncode == 2, (output, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith(f"error: output '{output}' cannot be created or written: "), done.stderr
    previous = tmp_path / "out"
    previous.mkdir()
    (previous / "index.parquet").write_bytes(b"previous build")
    bad_manifest = tmp_path / "m.csv"
    bad_manifest.write_text("path\nv.mp4\n")
    done = run_cli("build", "-i", str(bad_manifest), "-o", str(previous), "--overwrite")
    assert done.returncode == 2 and "no 'uri' column" in done.stderr
    assert (previous / "index.parquet").read_bytes() == b"previous build"


@pytest.mark.slow
def test_bad_manifest_rows_and_stray_files_are_rejects_not_crashes(tmp_path, corpus):
    bunny = corpus["folder"] / "bigbuckbunny.mp4"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([
        f'{{"uri": "{bunny}", "title": "Big Buck Bunny wakes up"}}',
        '{"uri": ""}',
        f'{{"uri": "{bunny}"}}',
        '{"uri": "other.mp4", "tags": 7}',
    ]) + "\n")
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(manifest), "-o", str(out), "--max-failure-ratio", "1")
    assert done.returncode == 0, done.stderr
    reasons = sorted((r["stage"], r["reason"]) for r in rejects_table(out))
    assert reasons == [("input", "duplicate_uri"), ("input", "manifest_row_invalid"),
                       ("input", "manifest_row_invalid")]
    assert len(index_table(out)) == 1
    # A row refused on reading is not done: fixed, the next run of the same command processes it.
    manifest.write_text(manifest.read_text().replace('"tags": 7', '"tags": "seven"'))
    again = run_cli("build", "-i", str(manifest), "-o", str(out), "--max-failure-ratio", "1")
    assert again.returncode == 0, again.stderr
    reasons = sorted((os.path.basename(r["uri"]), r["stage"], r["reason"]) for r in rejects_table(out))
    assert ("other.mp4", "probe", "file_not_found") in reasons, reasons  # read, then probed: it does not exist
    assert len(reasons) == 3 and len(index_table(out)) == 1


@pytest.mark.slow
def test_inputs_a_stopped_build_never_reached_are_listed_as_transient_rejects(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        (folder / f"empty{i}.mp4").write_bytes(b"")
    config = tmp_path / "c.yaml"
    config.write_text(open(os.path.join(os.path.dirname(__file__), "..", "pipelines", "build", "configs",
                                        "default.yaml")).read()
                      .replace("videos_per_chunk: 4", "videos_per_chunk: 2")
                      .replace("failure_ratio_min_inputs: 8", "failure_ratio_min_inputs: 2"))
    out = tmp_path / "out"
    done = run_cli("build", "-i", str(folder), "-o", str(out), "-c", str(config))
    assert done.returncode == 1 and "stopped: 2 of 2 inputs" in done.stderr
    rows = rejects_table(out)
    assert len(rows) == 5
    stopped = [r for r in rows if r["reason"] == "build_stopped"]
    assert len(stopped) == 3 and all(r["transient"] and r["stage"] == "build" for r in stopped)
    assert os.path.exists(out / "stats.json")


def test_runner_names_come_from_the_one_registry(tmp_path):
    from vidcurate.pipelines.runners import RUNNERS

    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--runner", "nope")
    assert done.returncode == 2 and all(f"'{name}'" in done.stderr for name in RUNNERS), done.stderr
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  - op: probe\nrun:\n  runner: nope\n")
    done = run_cli("build", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-c", str(config))
    assert done.returncode == 2 and f"unknown runner 'nope'; one of: {', '.join(RUNNERS)}" in done.stderr
