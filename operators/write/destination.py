"""Where a build's output goes: a local folder or any fsspec URL (s3://, gs://, memory://).

Files are only ever published whole. Locally a file is written next to its final name
(``.name.tmp``) and renamed; on an object store it is written to a local staging folder
and uploaded in one put, and object stores make an object visible only once complete.
Either way a reader never sees a partial shard or table.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import tempfile

from vidcurate.operators import kill_points


class Destination:
    def __init__(self, root: str):
        import fsspec

        self.root = root.rstrip("/") or root
        protocol = root.split("://", 1)[0] if "://" in root else "file"
        self.local = protocol in ("file", "local")
        if self.local:
            self.root = os.path.abspath(root[len("file://"):] if root.startswith("file://") else root)
            self.fs = None
            self._staging = None
        else:
            try:
                self.fs = fsspec.filesystem(protocol)
            except (ImportError, ValueError) as exc:
                raise ValueError(f"output {root!r}: no filesystem for {protocol}:// ({exc}); install its fsspec "
                                 f"package (s3fs for s3://, gcsfs for gs://)") from None
            self._staging = tempfile.mkdtemp(prefix="vidcurate-staging-")

    def __str__(self) -> str:
        return self.root

    def path(self, rel: str) -> str:
        if not rel:
            return self.root
        return os.path.join(self.root, rel) if self.local else posixpath.join(self.root, rel)

    # ---- reading ---------------------------------------------------------------------
    def exists(self, rel: str = "") -> bool:
        return os.path.exists(self.path(rel)) if self.local else self.fs.exists(self.path(rel))

    def isfile(self, rel: str = "") -> bool:
        return os.path.isfile(self.path(rel)) if self.local else self.fs.isfile(self.path(rel))

    def read_bytes(self, rel: str) -> bytes:
        if self.local:
            with open(self.path(rel), "rb") as handle:
                return handle.read()
        return self.fs.cat_file(self.path(rel))

    def open(self, rel: str):
        """A binary file object for reading (parquet tables are read batch by batch from it)."""
        return open(self.path(rel), "rb") if self.local else self.fs.open(self.path(rel), "rb")

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) in a folder; [] if it does not exist."""
        if self.local:
            path = self.path(rel)
            return sorted(os.listdir(path)) if os.path.isdir(path) else []
        if not self.fs.exists(self.path(rel)):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.path(rel), detail=False))

    def walk_files(self, rel: str) -> list[str]:
        """Every file under ``rel``, as paths relative to ``rel``, sorted."""
        if self.local:
            base = self.path(rel)
            found = [os.path.relpath(os.path.join(d, f), base) for d, _, files in os.walk(base) for f in files]
            return sorted(found)
        base = self.path(rel)
        if not self.fs.exists(base):
            return []
        stripped = self.fs._strip_protocol(base)  # find() answers without the protocol
        return sorted(posixpath.relpath(self.fs._strip_protocol(p), stripped) for p in self.fs.find(base))

    # ---- writing ---------------------------------------------------------------------
    def makedirs(self, rel: str = "") -> None:
        if self.local:
            os.makedirs(self.path(rel), exist_ok=True)
        else:
            self.fs.makedirs(self.path(rel), exist_ok=True)

    def staging_path(self, rel: str) -> str:
        """A local file to write ``rel`` into before publish()."""
        if self.local:
            final = self.path(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            return os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.tmp")
        path = os.path.join(self._staging, rel.replace("/", "__"))
        return path

    def publish(self, staged: str, rel: str) -> None:
        """Make the finished local file ``staged`` visible as ``rel``, whole."""
        kill_points.reached(f"before:{rel}")
        if self.local:
            os.replace(staged, self.path(rel))
        else:
            self.fs.put_file(staged, self.path(rel))
            os.remove(staged)
        kill_points.reached(f"after:{rel}")

    def write_bytes(self, rel: str, data: bytes) -> None:
        staged = self.staging_path(rel)
        with open(staged, "wb") as handle:
            handle.write(data)
        self.publish(staged, rel)

    def remove(self, rel: str) -> None:
        path = self.path(rel)
        if self.local:
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
        elif self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    def remove_partials(self, rel: str) -> int:
        """Delete leftover ``.*.tmp`` files of an interrupted run under ``rel``; how many."""
        if not self.local:
            return 0  # object stores never hold partial objects
        count = 0
        for name in self.walk_files(rel):
            if os.path.basename(name).startswith(".") and name.endswith(".tmp"):
                os.remove(os.path.join(self.path(rel), name))
                count += 1
        return count

    def close(self) -> None:
        if self._staging:
            shutil.rmtree(self._staging, ignore_errors=True)
