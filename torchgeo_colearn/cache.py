# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

"""Cache files named after a hash of what they depend on, and written atomically."""

import contextlib
import functools
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Bytes hashed at the start and at the end of every data file (files up to twice this size are
#: hashed whole).
DIGEST_BYTES = 64 * 1024

#: Hexadecimal digits of the hash kept in cache file names.
NAME_DIGITS = 16


@dataclass(frozen=True)
class CacheKey:
    """What a cache file depends on, hashed into its name.

    The hash (SHA-256) covers, in order:

    * *options*, as sorted JSON: every setting that changes the cached result (bands, modality
      groups, statistics mode, format version, ...);
    * every file of *files*: its path relative to *directory*, its size, and its first and last
      :data:`DIGEST_BYTES` bytes (the whole file when it is small). Modification times are not part
      of the key, so a copied or moved dataset keeps its caches, and a file rewritten with the same
      size and time is still noticed when the hashed bytes change;
    * the full bytes of every file of *whole_files* (split lists, label tables).

    A file that changes anywhere in the hashed bytes, appears or disappears gives a new name, so a
    stale cache is never read; the change of a large file in its middle only (beyond both hashed
    ends) at the same size is not noticed.
    """

    #: Directory of the cache file; the files are named relative to it.
    directory: str
    #: Readable start of the cache file name.
    name: str
    #: Settings that change the cached result; JSON-serialisable.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Data files the result is computed from, hashed by size and both ends.
    files: Sequence[str] = ()
    #: Small files hashed whole, e.g. split lists and label tables.
    whole_files: Sequence[str] = ()

    @functools.cached_property
    def digest(self) -> str:
        """Hash of everything the cache depends on.

        Returns:
            The SHA-256 hex digest.

        Raises:
            OSError: If a file cannot be read; the message names it.
        """
        hasher = hashlib.sha256()
        hasher.update(json.dumps(dict(self.options), sort_keys=True).encode())
        for path in self.files:
            _update_with_ends(hasher, path, self.directory)
        for path in self.whole_files:
            hasher.update(f'\n{os.path.relpath(path, self.directory)}\n'.encode())
            hasher.update(_read_bytes(path))
        return hasher.hexdigest()

    def path(self, suffix: str) -> str:
        """Return the cache file.

        Args:
            suffix: File extension, e.g. ``'.json'``.

        Returns:
            ``<directory>/<name>_<first 16 hex digits of the digest><suffix>``.
        """
        return os.path.join(
            self.directory, f'{self.name}_{self.digest[:NAME_DIGITS]}{suffix}'
        )


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Write a file so that readers never see it half-written.

    *write* fills a temporary file in the same directory, which then replaces *path* in one
    :func:`os.replace`; if anything fails, the temporary file is removed and *path* is untouched.

    Args:
        path: Final path of the file.
        write: Function writing the content to the path it is given.

    Raises:
        OSError: If the directory is not writable or the write fails.
    """
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    # created by *write*, so with the usual permissions (mkstemp would make it private)
    partial = f'{path}.{uuid.uuid4().hex[:12]}.partial'
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        raise


def _update_with_ends(hasher: Any, path: str, directory: str) -> None:
    """Hash a file's relative name, size and both ends.

    Args:
        hasher: A :mod:`hashlib` hash object.
        path: The file.
        directory: The directory the name is relative to.

    Raises:
        OSError: If the file cannot be read; the message names it.
    """
    try:
        with open(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(DIGEST_BYTES)
            if size > 2 * DIGEST_BYTES:
                f.seek(size - DIGEST_BYTES)
                tail = f.read(DIGEST_BYTES)
            else:
                tail = f.read()
    except OSError as error:
        msg = f'cannot read {path} to key a cache on it: {error}'
        raise OSError(msg) from error
    hasher.update(f'\n{os.path.relpath(path, directory)} {size}\n'.encode())
    hasher.update(head)
    hasher.update(tail)


def _read_bytes(path: str) -> bytes:
    """Read a whole file.

    Args:
        path: The file.

    Returns:
        Its bytes.

    Raises:
        OSError: If the file cannot be read; the message names it.
    """
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as error:
        msg = f'cannot read {path} to key a cache on it: {error}'
        raise OSError(msg) from error
