"""The annotation studio: `vidcurate annotate OUT` serves a page where people judge the candidates.

    catalog.py    the dataset's clips, candidates and mp4 byte ranges, read lazily
    store.py      the SQLite store (WAL) beside the labels file, and the labels parquet export
    studio.py     which clip comes next (K annotators per clip, blind; three orders) and the answers
    app.py        the Starlette app: pages (templates/), plain JavaScript (static/), the JSON API;
                  agreement per pair from pipelines/labels/agreement.py
    server.py     binding, the token, uvicorn
"""
