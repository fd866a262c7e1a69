"""Tools that read human (or simulated) judgments of captions: teacher_choice.py, Panda-70M's
greedy set cover over acceptability labels (`vidcurate teachers choose`)."""
