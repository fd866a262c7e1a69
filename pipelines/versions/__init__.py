"""Caption versions of a finished build: re-selection (select.py) without re-running teachers or
rewriting mp4 bytes; the store itself is operators/write/versions.py."""
