"""The per-file index of a dataset root and near-duplicate grouping (no TensorFlow).

Every image file is opened once: its size, a 64-bit dhash and a 16x16 grey thumbnail are cached in the user
cache folder (keyed by path, size and mtime), so a second run over the same folder reads nothing again.
Images whose hashes and thumbnails are close are near duplicates and share a group.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maskclf.data import images as imgs
from maskclf.files import MaskclfError, cache_dir, write_json

INDEX_VERSION = 1
THUMB = 16


@dataclass
class _FileInfo:
    ok: bool
    message: str = ""
    width: int = 0
    height: int = 0
    dhash: int = 0
    thumb: bytes = b""


def _describe(img: Image.Image) -> tuple[int, int, int, bytes]:
    thumb = np.asarray(img.convert("L").resize((THUMB, THUMB), Image.BILINEAR), dtype=np.uint8).tobytes()
    return img.width, img.height, imgs.dhash(img), thumb


def _inspect_file(path: Path) -> _FileInfo:
    try:
        img = imgs.load_rgb(path)
    except MaskclfError as e:
        return _FileInfo(False, str(e))
    if min(img.size) < 2:
        return _FileInfo(False, f"{path}: image is {img.width}x{img.height} pixels, too small to learn from")
    return _FileInfo(True, "", *_describe(img))


class _Index:
    """Per-file results cached across runs (keyed by absolute path, size, mtime)."""

    def __init__(self, root: Path):
        key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
        self.path = cache_dir("index") / f"{key}.json"
        self.data: dict = {}
        try:
            raw = json.loads(self.path.read_text())
            if raw.get("version") == INDEX_VERSION:
                self.data = raw["files"]
        except (OSError, ValueError, KeyError):
            pass
        self.dirty = False

    @staticmethod
    def _stamp(p: Path) -> str:
        st = p.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def get(self, p: Path) -> _FileInfo | None:
        try:
            rec = self.data.get(str(p))
            if rec and rec["stamp"] == self._stamp(p):
                return _FileInfo(rec["ok"], rec["message"], rec["w"], rec["h"], int(rec["dhash"]),
                                 bytes.fromhex(rec["thumb"]))
        except OSError:
            pass
        return None

    def put(self, p: Path, info: _FileInfo) -> None:
        try:
            stamp = self._stamp(p)
        except OSError:
            return
        self.data[str(p)] = {"stamp": stamp, "ok": info.ok, "message": info.message, "w": info.width,
                             "h": info.height, "dhash": str(info.dhash), "thumb": info.thumb.hex()}
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            write_json(self.path, {"version": INDEX_VERSION, "files": self.data})


def _inspect_files(paths: list[Path], index: _Index, progress: bool, what: str) -> list[_FileInfo]:
    out: list[_FileInfo | None] = [index.get(p) for p in paths]
    todo = [i for i, r in enumerate(out) if r is None]
    if todo:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
            for n, (i, info) in enumerate(zip(todo, ex.map(lambda i: _inspect_file(paths[i]), todo)), 1):
                out[i] = info
                index.put(paths[i], info)
                if progress and (n % 500 == 0 or n == len(todo)):
                    print(f"  checked {n}/{len(todo)} {what}", file=sys.stderr, flush=True)
        index.save()
    return out  # type: ignore[return-value]


def near_duplicate_pairs(hashes: list[int], thumbs: list[bytes], distance: int):
    """Pairs ``(i, j)``, ``i < j``, of images within ``distance`` bits of dhash whose 16x16 thumbnails also
    differ by at most 6 grey levels on average (so flat or simple images, which all hash alike, stay apart
    unless they really look the same)."""
    n = len(hashes)
    if distance < 0 or n < 2:
        return
    h = np.array(hashes, dtype=np.uint64)
    t = np.frombuffer(b"".join(thumbs), dtype=np.uint8).reshape(n, -1).astype(np.int16)
    chunk = max(1, 4_000_000 // n)
    for start in range(0, n, chunk):
        block = h[start:start + chunk, None] ^ h[None, :]
        ii, jj = np.nonzero(np.bitwise_count(block) <= distance)
        ii = ii + start
        keep = ii < jj
        for i, j in zip(ii[keep], jj[keep]):
            if np.abs(t[i] - t[j]).mean() <= 6.0:
                yield int(i), int(j)


class UnionFind:
    """Disjoint sets over 0..n-1; ``find`` gives the smallest member of an element's set."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        """The representative of ``i``'s set (with path halving)."""
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        """Merge the sets of ``a`` and ``b``."""
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _duplicate_groups(names: list[str], hashes: list[int], thumbs: list[bytes], distance: int) -> list[str]:
    """Group names: images that are near duplicates (:func:`near_duplicate_pairs`) share a group, named
    after its first member."""
    sets = UnionFind(len(names))
    for i, j in near_duplicate_pairs(hashes, thumbs, distance):
        sets.union(i, j)
    return [names[sets.find(i)] for i in range(len(names))]
