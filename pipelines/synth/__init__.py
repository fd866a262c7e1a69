"""A synthetic world of clips whose true content is known exactly (``vidcurate synth``).

No labelled video-caption data reaches our machines, so this generates some: procedurally
drawn objects over plain or real-footage backgrounds, encoded as real mp4s, captioned by
simulated teachers with known error profiles and judged by simulated annotators, written
in exactly a build's format plus ``truth.parquet`` and ``labels.parquet``. Users run it to
check a setup; selection and refinement are judged against the truth on the held-out clips.

    world.py       attributes, shots and multi-shot source videos drawn from a seed
    captions.py    the caption grammar with paraphrases; reading attributes back from any text
    render.py      numpy frames -> mp4 through ffmpeg; joining shots into a source video
    teachers.py    six simulated teachers, each wrong on ~R of the clips in its own way
    annotators.py  simulated human judgments (schemas/labels.py), human-human agreement
    write.py       the dataset through the build's own selector, sink, card and report
    score.py       attribute accuracy and faithful share of any captions against the truth
"""
