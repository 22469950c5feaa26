"""One run per workdir: an exclusive lock file that names its holder.

`held(workdir)` takes `workdir/.run.lock` (process 0; `.run.lock.<i>` for process i of a
multi-process run) with `flock`, writes the holder's pid, host and start time into it,
and releases it on exit. A second run on the same workdir is refused with a ConfigError
naming the holder. The kernel drops a flock when its process dies, kill -9 included, so
a lock file left behind by a killed run is only a name: the next run takes it over and
says so. Where the filesystem has no flock (some network mounts), the lock falls back to
checking whether the recorded pid still runs on this host.

Re-entrant within a process: `main.run` holds the top workdir and `train.train_and_evaluate`
holds each training workdir, the same folder for finetune and distill.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator

from absl import logging

from rail_kd_jax.core.errors import ConfigError
from rail_kd_jax.training import validation

_HELD: dict[str, int] = {}  # realpath of a lock file this process holds -> nesting depth
_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def lock_path(workdir: str, process_index: int = 0) -> str:
  name = ".run.lock" if process_index == 0 else f".run.lock.{process_index}"
  return os.path.join(workdir, name)


def _holder(fd: int) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    return json.loads(text) if text else {}
  except (OSError, ValueError):
    return {}


def _describe(h: dict) -> str:
  if not h:
    return "another process (the lock file names none)"
  return f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"


def _alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # exists, owned by someone else
  except (OSError, TypeError, ValueError):
    return False
  return True


def _busy(workdir: str, holder: dict) -> ConfigError:
  return ConfigError(
    f"--workdir={workdir!r} is in use by another run ({_describe(holder)}); wait for it to end, "
    "stop it, or choose another --workdir"
  )


def _acquire(workdir: str, path: str) -> int:
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    locked = True
  except BlockingIOError:
    holder = _holder(fd)
    os.close(fd)
    raise _busy(workdir, holder) from None
  except OSError as e:
    if e.errno not in _NO_FLOCK:
      os.close(fd)
      raise
    locked = False
  before = _holder(fd)
  if not locked:
    if before.get("host") == socket.gethostname() and before.get("pid") != os.getpid() and _alive(before.get("pid")):
      os.close(fd)
      raise _busy(workdir, before)
    logging.warning(
      "%s: this filesystem has no flock; the lock is checked by pid on this host only (a run on another host "
      "is not seen)",
      path,
    )
  elif before.get("pid") not in (None, os.getpid()):
    logging.warning(
      "%s: the previous run (%s) ended without releasing its lock (killed?); taking it over", path, _describe(before)
    )
  me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, (json.dumps(me) + "\n").encode())
  return fd


@contextlib.contextmanager
def held(workdir: str, process_index: int | None = None) -> Iterator[str]:
  """Holds `workdir`'s lock for this process; yields the lock file's path. The workdir is created
  (and checked: `validation.prepare_workdir`) first."""
  validation.prepare_workdir(workdir)
  if process_index is None:
    import jax  # the process index exists only once jax.distributed is initialised

    process_index = jax.process_index()
  path = lock_path(workdir, process_index)
  key = os.path.realpath(path)
  if key in _HELD:
    _HELD[key] += 1
    try:
      yield path
    finally:
      _HELD[key] -= 1
    return
  fd = _acquire(workdir, path)
  _HELD[key] = 1
  try:
    yield path
  finally:
    del _HELD[key]
    with contextlib.suppress(OSError):
      os.ftruncate(fd, 0)  # released: the file names no one
    os.close(fd)  # closing drops the flock
