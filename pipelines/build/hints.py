"""What a user can do about the most common reasons inputs yield no clip.

A build failing wholesale (or finishing with most inputs rejected) prints the hint of the
most common reason beside its summary, so the first message a new user sees says what to
change, not only what went wrong. Keys are ``stage/reason`` as in rejects.parquet.
"""
from __future__ import annotations

HINTS = {
    "consensus_selector/no_caption_candidates": (
        "no teacher wrote a caption: the offline teachers need speech, on-screen text or "
        "metadata. Add a vision teacher (video_teacher or frame_teacher with a model folder or hub id), "
        "give titles/descriptions in a manifest (uri,title,description columns), or run `vidcurate split` "
        "for clips without captions"),
    "probe/unreadable_container": (
        "the files are not videos or are damaged (truncated downloads, wrong extension); check one with "
        "`python -m av.info FILE` or play it"),
    "probe/empty_file": "the files are empty (0 bytes): the download or copy failed",
    "probe/file_not_found": "the manifest names files that do not exist; relative uris are resolved "
                            "against the manifest's folder",
    "probe/fetch_failed": "remote inputs could not be fetched: check the URLs, credentials and network, "
                          "then run `vidcurate retry-failed OUT`",
    "probe/not_a_file": "the inputs are pipes, devices or folders, not regular files",
    "probe/read_timeout": "opening the files stalled past probe.read_timeout (a slow network filesystem?); "
                          "run `vidcurate retry-failed OUT`",
    "probe/too_short": "the videos are shorter than probe.min_duration",
    "probe/no_video_stream": "the files hold no video stream (audio only?)",
    "split_shots/too_short": "every shot is shorter than split_shots.min_clip_seconds: lower it, or use "
                             "another splitting preset",
    "probe/too_long": "the videos are longer than probe.max_duration (4 hours by default)",
    "probe/too_many_pixels": "the videos declare frames larger than probe.max_pixels (8K by default): raise it "
                             "if you mean to keep them",
    "probe/extreme_aspect": "the videos are far wider than tall or the reverse (probe.max_aspect_ratio)",
    "probe/file_too_large": "the files are larger than probe.max_file_bytes",
    "probe/scheme_not_allowed": "the inputs' URL scheme is not in probe.allowed_schemes",
    "split_shots/truncated_video": "the videos end early (damaged or partial files)",
    "split_shots/decode_timeout": "decoding a video took longer than split_shots.decode_timeout: the files may be "
                                  "damaged, or very long at a high resolution",
    "split_shots/decode_memory": "decoding needed more memory than split_shots.decode_memory_mb",
    "extract_clips/worker_crashed": (
        "these videos killed the process working on them twice (a crash in a native decoder, or out of memory) "
        "and were set aside (OUT/_crashes/strikes.jsonl says in which stage); `vidcurate retry-failed OUT` gives "
        "them one more try, e.g. with more memory"),
    "build/build_stopped": "the build stopped before these inputs: run the same command again",
    "input/unsupported_extension": "the manifest lists files that are not videos by extension",
    "input/duplicate_uri": "the manifest lists the same file more than once",
    "input/duplicate_video_id": "manifest rows give different files the same video_id: give each file its own, or "
                                "leave video_id out (it is then derived from the uri)",
    "input/manifest_row_invalid": "fix the manifest rows named in rejects.parquet (detail column); the next run "
                                  "of the same command reads the manifest again",
    "write/duplicate_clip_id": "two inputs produced the same clip ids: give each file its own video_id",
}


def hint_for(reason: str) -> str | None:
    """The hint of ``stage/reason``, else of any stage's ``reason`` (e.g. a renamed selector step)."""
    if reason in HINTS:
        return HINTS[reason]
    tail = reason.split("/", 1)[-1]
    return next((text for key, text in HINTS.items() if key.split("/", 1)[1] == tail), None)
