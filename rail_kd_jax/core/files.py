"""Temporary siblings for atomic writes, with the permissions a plain `open` would give.

`tempfile.mkstemp` makes files 0600 and `mkdtemp` folders 0700, so an output written to
a temporary sibling and renamed into place (predictions, exports, the teacher cache, data
files) would be unreadable to the other users of a shared machine. These two create the
same temporaries, then apply the process's umask as `open` and `os.makedirs` do.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator

_CHUNK = 1 << 22


def sha256(path: str) -> str:
  """The hex sha256 of a file's bytes, read in 4 MiB blocks (hashing releases the GIL, so
  several files hash in parallel threads)."""
  h = hashlib.sha256()
  buf = memoryview(bytearray(_CHUNK))
  with open(path, "rb", buffering=0) as f:
    while n := f.readinto(buf):
      h.update(buf[:n])
  return h.hexdigest()


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def mkstemp(dir: str, suffix: str = "", prefix: str = "tmp") -> tuple[int, str]:
  """`tempfile.mkstemp` whose file gets mode 0666 & ~umask (as `open(path, 'w')` would)."""
  fd, path = tempfile.mkstemp(dir=dir, suffix=suffix, prefix=prefix)
  os.fchmod(fd, 0o666 & ~_umask())
  return fd, path


def mkdtemp(dir: str, prefix: str = "tmp", suffix: str = "") -> str:
  """`tempfile.mkdtemp` whose folder gets mode 0777 & ~umask (as `os.makedirs` would)."""
  path = tempfile.mkdtemp(dir=dir, prefix=prefix, suffix=suffix)
  os.chmod(path, 0o777 & ~_umask())
  return path


def chmod_like_open(path: str) -> None:
  """Gives a file written by a library that creates it 0600 (safetensors does) the mode 0666 &
  ~umask that `open(path, 'w')` would have given it."""
  os.chmod(path, 0o666 & ~_umask())


def os_error_text(e: OSError) -> str:
  """'No space left on device (ENOSPC)': the OS's words and the errno's name."""
  code = errno.errorcode.get(e.errno) if e.errno is not None else None
  return f"{e.strerror or e} ({code})" if code else str(e.strerror or e)


@contextlib.contextmanager
def staging_folder(target: str, prefix: str) -> Iterator[str]:
  """A new temporary folder beside `target` (its parent created if needed) to write into and
  rename into place when complete; whatever is still there on exit (a failed or abandoned
  write) is removed."""
  os.makedirs(os.path.dirname(target), exist_ok=True)
  tmp = mkdtemp(dir=os.path.dirname(target), prefix=prefix)
  try:
    yield tmp
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def write_json(path: str, obj) -> None:
  """Writes `obj` as indented JSON to `path` atomically (a temporary sibling renamed into place)."""
  fd, tmp = mkstemp(dir=os.path.dirname(path), suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(obj, f, indent=2)
    f.write("\n")
  os.replace(tmp, path)
