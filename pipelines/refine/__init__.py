"""`vidcurate refine`: Video DataFlywheel's loop on a finished build, round after round.

    state.py      OUT/refine/state.json: which step each round is in (a crash resumes there)
    clips.py      the build's clips as records (mp4 by byte range, source text) for a teacher
    reselect.py   the round's selection: the student's candidate changes a caption only when it wins
    loop.py       the rounds: train the student, re-caption, re-select, write refine-r<r>
"""
