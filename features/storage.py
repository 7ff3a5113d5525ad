"""Paths that are local files or objects in a store (``s3://bucket/key``, ``gs://``, any URI
pyarrow's filesystems know), behind one set of functions.

A local path keeps local semantics (a write goes to a temp file, is synced and renamed into
place). A URI goes through ``pyarrow.fs``: a write is one PUT of the finished object, so a
reader sees the whole object or none of it; "directories" are key prefixes. Credentials and
the endpoint come from the store's usual environment (for S3: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for an S3-compatible server),
the same on the driver and on every Ray worker.

    is_uri("s3://b/data")            -> True
    join("s3://b/runs", "r1")        -> "s3://b/runs/r1"
    write_text("s3://b/runs/r1/run.json", "{}")
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import glob as local_glob
import os
import shutil
from typing import List, Tuple

import pyarrow.fs as pafs


def is_uri(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` other than ``file://`` (a local path)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def local_path(path: str | os.PathLike) -> str:
    """A local path without a ``file://`` prefix."""
    text = os.fspath(path)
    return text[len("file://") :] if text.startswith("file://") else text


@functools.lru_cache(maxsize=32)
def _store(scheme_and_bucket: str) -> pafs.FileSystem:
    filesystem, _ = pafs.FileSystem.from_uri(scheme_and_bucket)
    return filesystem


def filesystem(path: str | os.PathLike) -> Tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path inside it)`` for a local path or a URI (one filesystem per
    scheme and bucket, made once per process).

    Raises:
        ValueError: for a URI whose scheme pyarrow does not know, naming it.
    """
    text = os.fspath(path)
    if not is_uri(text):
        return pafs.LocalFileSystem(), os.path.abspath(local_path(text))
    scheme, rest = text.split("://", 1)
    bucket = rest.split("/", 1)[0]
    try:
        store = _store(f"{scheme}://{bucket}")
    except (ValueError, OSError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"cannot open {text}: {str(err).splitlines()[0]}") from None
    return store, rest.rstrip("/")


def join(base: str | os.PathLike, *names: str) -> str:
    """``base/name/...`` for a URI or a local path."""
    text = os.fspath(base)
    if is_uri(text):
        return "/".join([text.rstrip("/"), *names])
    return os.path.join(text, *names)


def name_of(path: str | os.PathLike) -> str:
    """The last part of a path or URI."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def absolute(path: str | os.PathLike) -> str:
    """A local path made absolute; a URI as given."""
    text = os.fspath(path)
    return text if is_uri(text) else os.path.abspath(local_path(text))


def _info(path: str | os.PathLike) -> pafs.FileInfo:
    store, inner = filesystem(path)
    return store.get_file_info(inner)


def exists(path: str | os.PathLike) -> bool:
    return _info(path).type != pafs.FileType.NotFound


def is_file(path: str | os.PathLike) -> bool:
    return _info(path).type == pafs.FileType.File


def is_dir(path: str | os.PathLike) -> bool:
    return _info(path).type == pafs.FileType.Directory


def size_and_mtime_ns(path: str | os.PathLike) -> Tuple[int, int]:
    """Bytes and modification time (ns; 0 where the store keeps none)."""
    info = _info(path)
    return int(info.size or 0), int(info.mtime_ns or 0)


def children(path: str | os.PathLike) -> List[Tuple[str, bool]]:
    """``(name, is a directory)`` of every entry directly under ``path`` ([] when it does not exist)."""
    store, inner = filesystem(path)
    found = store.get_file_info(pafs.FileSelector(inner, allow_not_found=True))
    return sorted((info.base_name, info.type == pafs.FileType.Directory) for info in found)


def files_under(path: str | os.PathLike, suffix: str) -> List[str]:
    """Every file under ``path`` (recursively) whose name ends in ``suffix``, sorted, named as
    ``path`` is (a URI stays a URI); names starting with '.' or '_' are skipped (temp files)."""
    text = os.fspath(path).rstrip("/")
    store, inner = filesystem(text)
    found = []
    for info in store.get_file_info(pafs.FileSelector(inner, recursive=True, allow_not_found=True)):
        relative = info.path[len(inner) :].lstrip("/")
        if (
            info.type == pafs.FileType.File
            and info.base_name.endswith(suffix)
            and not info.base_name.startswith((".", "_"))
        ):
            found.append(join(text, *relative.split("/")) if is_uri(text) else os.path.join(local_path(text), relative))
    return sorted(found)


def glob(pattern: str) -> List[str]:
    """Files matching a glob (``*``, ``?``, ``[...]``, ``**`` for any depth), sorted."""
    if not is_uri(pattern):
        return sorted(p for p in local_glob.glob(local_path(pattern), recursive=True) if os.path.isfile(p))
    parts = pattern.split("/")
    fixed = next(i for i, part in enumerate(parts) if local_glob.has_magic(part))
    base = "/".join(parts[:fixed])
    wanted = parts[fixed:]
    return [path for path in files_under(base, "") if _matches(path[len(base) + 1 :].split("/"), wanted)]


def matches(relative: str, pattern: str) -> bool:
    """Whether the ``/``-separated ``relative`` path matches the glob ``pattern`` as :func:`glob`
    matches it (``**`` for any depth)."""
    return _matches(relative.split("/"), pattern.split("/"))


def _matches(names: List[str], pattern: List[str]) -> bool:
    if not pattern:
        return not names
    if pattern == ["**"]:  # a trailing ** matches what lies inside a folder (as Python's glob does)
        return bool(names)
    if pattern[0] == "**":
        return any(_matches(names[i:], pattern[1:]) for i in range(len(names) + 1))
    return bool(names) and fnmatch.fnmatchcase(names[0], pattern[0]) and _matches(names[1:], pattern[1:])


def read_bytes(path: str | os.PathLike) -> bytes:
    if not is_uri(path):
        with open(local_path(path), "rb") as handle:
            return handle.read()
    store, inner = filesystem(path)
    with store.open_input_stream(inner) as handle:
        return handle.read()


def read_text(path: str | os.PathLike) -> str:
    return read_bytes(path).decode("utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file so that a reader never sees part of it: a local file goes to a
    hidden temp file, synced, renamed into place (and its folder synced); an object is one PUT.

    Raises:
        OSError: when the local folder does not exist or the store refuses the write.
    """
    text = os.fspath(path)
    if is_uri(text):
        store, inner = filesystem(text)
        with store.open_output_stream(inner) as handle:
            handle.write(data)
        return
    target = local_path(text)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):  # not created: a typo in a folder name is an error
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", target)
    tmp = os.path.join(folder, f".{os.path.basename(target)}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
    replace_durably(tmp, target)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def replace_durably(tmp: str, target: str) -> None:
    """Move a finished local temp file into place so that it survives a crash or power loss:
    the file synced, renamed over ``target``, the folder synced."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    _sync_folder(os.path.dirname(os.path.abspath(target)))


def _sync_folder(folder: str) -> None:
    """Make a rename inside a local folder durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def delete(path: str | os.PathLike, missing_ok: bool = True) -> None:
    """Delete one file or object.

    Raises:
        FileNotFoundError: when it does not exist and ``missing_ok`` is False.
    """
    store, inner = filesystem(path)
    try:
        store.delete_file(inner)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_folder(path: str | os.PathLike) -> None:
    """Delete a folder (or every object under a URI prefix) and what it holds; nothing when absent."""
    if not is_uri(path):
        shutil.rmtree(local_path(path), ignore_errors=True)
        return
    store, inner = filesystem(path)
    try:
        store.delete_dir(inner)
    except FileNotFoundError:
        pass


def make_dirs(path: str | os.PathLike) -> None:
    """Create a local folder and its parents; nothing for a URI (a store has only keys)."""
    if not is_uri(path):
        os.makedirs(local_path(path), exist_ok=True)
