"""Poison inputs: a video that kills the process working on it is retried once, then rejected.

A crash in a native decoder, or the kernel's OOM killer, takes down a whole worker process,
not just the record: the operator contract (exceptions become rejects) cannot catch it. So
every operator call tells the build's crash ledger which videos it is working on, and a
process that dies leaves that list behind:

    <folder>/<token>.lock             held (flock) by a live process for as long as it lives
    <folder>/<token>-<thread>.busy    the stage and the videos that thread's operator call is on
    <folder>/strikes.jsonl            one line per video that was being worked on when a process died

A ``.busy`` file whose ``.lock`` nobody holds belongs to a dead process: ``harvest()`` (run by
every process before each call, and by the build's supervisor) turns it into one strike per
video it names. A video with a strike is worked on alone (its batch is split per video, so a
second crash is charged to it, not to the videos that shared its batch); a video with
``MAX_STRIKES`` strikes is rejected (``worker_crashed``) by the next operator that gets it.
Who restarts the dead process is the runner's business: Ray retries the task or restarts the
actor; the local and Beam runners' build is restarted by its supervisor
(pipelines/build/supervisor.py).

The build points every process at one folder (``VIDCURATE_CRASH_LEDGER``, inherited by Ray's
and Beam's local workers); unset, nothing is recorded and nothing is read.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
from collections import Counter

LEDGER_ENV = "VIDCURATE_CRASH_LEDGER"
MAX_STRIKES = 2  # a crash, one retry alone, then the video is set aside
STRIKES_FILE = "strikes.jsonl"


class CrashLedger:
    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_handle = None  # taken on first use, in the process that uses it (after a fork)
        self._lock_pid = None
        self._local = threading.local()
        self._strikes: Counter = Counter()
        self._read_bytes = 0

    # ---- this process's work -------------------------------------------------------------
    def busy(self, stage: str, uris: list[str]) -> None:
        """This thread's operator call is now on ``uris``; ``idle()`` when it returns."""
        self._hold_lock()
        path = os.path.join(self.folder, f"{self._token}-{threading.get_ident()}.busy")
        stack = self._local.__dict__.setdefault("stack", [])
        stack.append({"stage": stage, "uris": sorted(set(uris))})
        self._local.path = path
        _write(path, stack[-1])

    def idle(self) -> None:
        """The call that ``busy`` announced returned (an outer call, if any, is still on its videos)."""
        stack = self._local.__dict__.get("stack")
        if stack:
            stack.pop()
            _write(self._local.path, stack[-1] if stack else None)

    def _hold_lock(self) -> None:
        if self._lock_handle is None or self._lock_pid != os.getpid():
            self._token = f"{os.getpid()}-{secrets.token_hex(4)}"
            path = os.path.join(self.folder, f"{self._token}.lock")
            # Locked before it is visible: a harvester never sees a live process's lock file free.
            self._lock_handle = open(path + ".new", "w")
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX)
            os.rename(path + ".new", path)
            self._lock_pid = os.getpid()

    # ---- what dead processes left ----------------------------------------------------------
    def harvest(self) -> list[dict]:
        """Strike every video a dead process was working on; the strikes added, each once."""
        added = []
        names = os.listdir(self.folder)
        for name in sorted(names):
            if not name.endswith(".busy") or name.startswith(self._token + "-"):
                continue
            owner = name.rsplit("-", 1)[0]
            if _alive(os.path.join(self.folder, f"{owner}.lock")):
                continue
            claimed = os.path.join(self.folder, f".{name}.{secrets.token_hex(4)}.claimed")
            try:
                os.rename(os.path.join(self.folder, name), claimed)  # one harvester wins
            except FileNotFoundError:
                continue
            work = _read_json(claimed)
            os.remove(claimed)
            for uri in (work or {}).get("uris", []):
                added.append({"uri": uri, "stage": work.get("stage", "?")})
        if added:
            with open(os.path.join(self.folder, STRIKES_FILE), "a", encoding="utf-8") as handle:
                handle.write("".join(json.dumps(strike) + "\n" for strike in added))
        busy_owners = {n.rsplit("-", 1)[0] for n in os.listdir(self.folder) if n.endswith(".busy")}
        for name in names:  # the locks of dead processes whose work is harvested
            owner = name[:-len(".lock")]
            if name.endswith(".lock") and owner != self._token and owner not in busy_owners:
                if not _alive(os.path.join(self.folder, name)):
                    _remove(os.path.join(self.folder, name))
        return added

    def strikes(self) -> Counter:
        """Strikes per uri (re-read only when the file grew)."""
        path = os.path.join(self.folder, STRIKES_FILE)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            return self._strikes
        if size != self._read_bytes:
            with open(path, "rb") as handle:
                handle.seek(self._read_bytes)
                data = handle.read(size - self._read_bytes)
            complete = data[:data.rfind(b"\n") + 1]
            for line in complete.splitlines():
                try:
                    self._strikes[json.loads(line)["uri"]] += 1
                except (ValueError, KeyError, TypeError):
                    pass
            self._read_bytes += len(complete)
        return self._strikes

    def forgive(self, uris: set[str]) -> None:
        """Forget the strikes of ``uris`` (``vidcurate retry-failed`` gives them a fresh try)."""
        path = os.path.join(self.folder, STRIKES_FILE)
        try:
            with open(path, encoding="utf-8") as handle:
                kept = [line for line in handle if (_parse(line) or {}).get("uri") not in uris]
        except FileNotFoundError:
            return
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        os.replace(path + ".tmp", path)
        self._strikes, self._read_bytes = Counter(), 0

    def stages(self, uri: str) -> list[str]:
        """The stages ``uri`` was in when processes died."""
        try:
            with open(os.path.join(self.folder, STRIKES_FILE), encoding="utf-8") as handle:
                return [s["stage"] for s in map(_parse, handle) if s and s.get("uri") == uri]
        except FileNotFoundError:
            return []


def alone_if_struck(records: list[dict], strikes: Counter) -> list[list[dict]]:
    """The records of videos with no strike as one batch, then each struck video's records alone."""
    groups: dict[str, list[dict]] = {}
    clean = []
    for record in records:
        if strikes[record.get("uri")]:
            groups.setdefault(record["uri"], []).append(record)
        else:
            clean.append(record)
    return [clean, *groups.values()]


def _alive(lock_path: str) -> bool:
    """Whether a live process holds ``lock_path`` (a missing lock file: its owner is gone)."""
    try:
        fd = os.open(lock_path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _write(path: str, work: dict | None) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        if work is not None:
            handle.write(json.dumps(work))


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.loads(handle.read() or "null")
    except (OSError, ValueError):
        return None


def _parse(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


_ledgers: dict[str, CrashLedger] = {}


def active() -> CrashLedger | None:
    """This process's ledger: the folder the build named in ``VIDCURATE_CRASH_LEDGER``, or None."""
    folder = os.environ.get(LEDGER_ENV)
    if not folder:
        return None
    if folder not in _ledgers:
        _ledgers[folder] = CrashLedger(folder)
    return _ledgers[folder]
