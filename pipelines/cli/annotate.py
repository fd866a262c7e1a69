"""`vidcurate annotate OUT` (serve the annotation page) and `vidcurate annotate export OUT`."""
from __future__ import annotations

import sys

import click


class _ServeByDefault(click.Group):
    """``annotate OUT ...`` serves; ``annotate export OUT ...`` exports (a subcommand name comes first)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ServeByDefault)
def annotate() -> None:
    """The annotation studio: people pick the best caption, correct captions and mark good ones.

    \b
    vidcurate annotate OUT [--labels FILE] [--port N] [--host 127.0.0.1]   serve the page
    vidcurate annotate export OUT [--labels FILE]                           rewrite the labels parquet

    Labels go to OUT/labels.parquet by default (the labels schema; what `vidcurate retriever
    finetune --labels` and `vidcurate teachers choose` read), kept in OUT/labels.sqlite.
    """


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@annotate.command("serve")
@click.argument("output", metavar="OUT")
@click.option("--labels", default=None, help="The labels parquet to write (default OUT/labels.parquet); its "
              "store is beside it (.sqlite). An existing labels file's judgments are kept.")
@click.option("--version", default=None, help="Whose captions to judge: a caption version, 'build' (the "
              "shards'), default the latest.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where to listen. Beyond localhost needs "
              "--allow-remote and then a token.")
@click.option("--port", type=int, default=8765, show_default=True, help="0: any free port (printed).")
@click.option("--allow-remote", is_flag=True, help="Allow a --host other than localhost (a token is required).")
@click.option("--token", default=None, help="The token the page requires (default: none on localhost, a random "
              "one otherwise).")
@click.option("--order", type=click.Choice(["uniform", "low-score", "disagreement"]), default="uniform",
              show_default=True, help="Which clips come next: a seeded shuffle, lowest selector score first, or "
              "stratified by teacher disagreement.")
@click.option("--overlap", "-k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Annotators per clip and mode (blind to each other); agreement is shown per pair.")
@click.option("--lease-minutes", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="A clip shown but not answered goes back to the queue after this long.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the uniform order.")
def serve_command(output: str, labels: str | None, version: str | None, host: str, port: int, allow_remote: bool,
                  token: str | None, order: str, overlap: int, lease_minutes: float, seed: int) -> None:
    """Serve the annotation page for the build in OUT and print its URL (Ctrl-C stops it)."""
    from vidcurate.pipelines.annotate.catalog import CatalogError
    from vidcurate.pipelines.annotate.server import ServeError, bind, open_studio, serve, url_of
    from vidcurate.schemas.labels import LabelsFileError

    try:
        sock, token = bind(host, port, allow_remote, token)
    except ServeError as exc:
        _fail(str(exc))
    try:
        studio = open_studio(output, labels, version, order, overlap, lease_minutes * 60, seed)
    except (CatalogError, LabelsFileError, ValueError) as exc:
        sock.close()
        _fail(str(exc))
    click.echo(f"{output}: {studio.total} clips ({studio.catalog.version} captions); labels: "
               f"{studio.store.labels_path}")
    click.echo(f"annotation page: {url_of(sock, host, token)}", nl=True)
    sys.stdout.flush()
    serve(studio, sock, token)


@annotate.command("export")
@click.argument("output", metavar="OUT")
@click.option("--labels", default=None, help="The labels file whose store to export (default OUT/labels.parquet).")
def export_command(output: str, labels: str | None) -> None:
    """Rewrite the labels parquet from the annotation store (atomically)."""
    import os

    from vidcurate.operators.write.layout import LABELS_FILE
    from vidcurate.pipelines.annotate.store import Store, store_path

    path = labels or os.path.join(output, LABELS_FILE)
    if not os.path.exists(store_path(path)):
        _fail(f"no annotation store {store_path(path)!r}: nobody has annotated {output!r} with these labels yet")
    store = Store(path)
    try:
        count = store.export()
    finally:
        store.close()
    click.echo(f"{path}: {count} judgments")
