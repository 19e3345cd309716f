# Copyright (c) torchgeo-colearn contributors. All rights reserved.
# Licensed under the MIT License.

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from torchgeo_colearn.cache import DIGEST_BYTES, CacheKey, atomic_write


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / 'data'
    (root / 'a').mkdir(parents=True)
    (root / 'a' / 'small.bin').write_bytes(bytes(range(256)) * 4)
    (root / 'big.bin').write_bytes(os.urandom(5 * DIGEST_BYTES))
    (root / 'train.txt').write_text('a\nb\n')
    return root


def key(root: Path, **options: object) -> CacheKey:
    return CacheKey(
        str(root),
        'cache',
        options=options,
        files=[str(root / 'a' / 'small.bin'), str(root / 'big.bin')],
        whole_files=[str(root / 'train.txt')],
    )


class TestCacheKey:
    def test_path(self, data: Path) -> None:
        path = key(data).path('.json')
        assert os.path.dirname(path) == str(data)
        name = os.path.basename(path)
        assert name.startswith('cache_') and name.endswith('.json') and len(name) == 27

    def test_stable_and_independent_of_location(
        self, data: Path, tmp_path: Path
    ) -> None:
        copy = tmp_path / 'copy'
        shutil.copytree(data, copy)  # new modification times, same content
        assert key(data).digest == key(data).digest == key(copy).digest

    def test_options(self, data: Path) -> None:
        assert key(data, stats='moments').digest != key(data, stats='robust').digest
        assert key(data, a=1, b=2).digest == key(data, b=2, a=1).digest

    @pytest.mark.parametrize(
        'name,offset',
        [('a/small.bin', 500), ('big.bin', 10), ('big.bin', -10), ('train.txt', 0)],
    )
    def test_same_size_and_time_edit(
        self,
        data: Path,
        name: str,
        offset: int,
        edit_in_place: Callable[[str, Callable[[str], None]], None],
    ) -> None:
        before = key(data).digest

        def flip_byte(path: str) -> None:
            with open(path, 'r+b') as f:
                f.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
                byte = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([byte[0] ^ 0xFF]))

        edit_in_place(str(data / name), flip_byte)
        assert key(data).digest != before

    def test_file_list(self, data: Path) -> None:
        fewer = CacheKey(str(data), 'cache', files=[str(data / 'big.bin')])
        assert fewer.digest != key(data).digest

    def test_unreadable_file(self, data: Path) -> None:
        missing = CacheKey(str(data), 'cache', files=[str(data / 'gone.h5')])
        with pytest.raises(OSError, match=r'cannot read .*gone\.h5 to key a cache'):
            missing.path('.pt')


def write_text(path: str, text: str) -> None:
    with open(path, 'w') as f:
        f.write(text)


class TestAtomicWrite:
    def test_replaces(self, tmp_path: Path) -> None:
        path = tmp_path / 'out' / 'file.txt'
        for text in ('one', 'two'):
            atomic_write(str(path), functools.partial(write_text, text=text))
        assert path.read_text() == 'two'
        assert os.listdir(path.parent) == ['file.txt']
        # the permissions of a file written directly, not private ones
        plain = tmp_path / 'plain.txt'
        write_text(str(plain), 'three')
        assert path.stat().st_mode == plain.stat().st_mode

    def test_failure_keeps_the_old_file(self, tmp_path: Path) -> None:
        path = tmp_path / 'file.txt'
        path.write_text('old')

        def fail(partial: str) -> None:
            Path(partial).write_text('half')
            raise OSError('disk full')

        with pytest.raises(OSError, match='disk full'):
            atomic_write(str(path), fail)
        assert path.read_text() == 'old'
        assert os.listdir(tmp_path) == ['file.txt']
