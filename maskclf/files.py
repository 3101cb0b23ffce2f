"""Small file helpers shared by every module: errors, atomic writes, cache folder.

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


class MaskclfError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    So a crash or kill never leaves a half-written file under the final name.

    Args:
        path: the final file name.
        suffix: suffix of the temporary name; defaults to the final suffix.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the final suffix: some writers (Keras) insist on it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file 0600; give it the mode an ordinary open() would (umask applied).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    # numpy scalars and arrays, Paths
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def cache_dir(*parts: str) -> Path:
    """The user cache folder for maskclf (``$MASKCLF_CACHE`` or ``~/.cache/maskclf``).

    Never inside a data folder, which may be read-only.
    """
    root = os.environ.get("MASKCLF_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "maskclf")
    p = Path(root, *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a labels.txt (one class name per line, model order)."""
    p = Path(path)
    if not p.is_file():
        raise MaskclfError(f"{p}: labels file not found; a run or export folder holds labels.txt")
    names = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise MaskclfError(f"{p}: labels file is empty; write one class name per line")
    return names


def write_labels(path: str | os.PathLike, class_names: list[str]) -> Path:
    """Write labels.txt, one class name per line, in model output order."""
    return write_text(path, "".join(f"{n}\n" for n in class_names))


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_yaml(path: str | os.PathLike, what: str = "config file") -> Any:
    """Parse a YAML file safely; one-line MaskclfError when it is missing or malformed."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise MaskclfError(f"{p}: {what} not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise MaskclfError(f"{p}: not valid YAML ({str(e).splitlines()[0]}); fix the file") from None
    except UnicodeDecodeError:
        raise MaskclfError(f"{p}: not a text file; expected YAML") from None
    except OSError as e:
        raise MaskclfError(f"{p}: cannot read {what} ({e.strerror or e})") from None
    if _expanded_size(data) > MAX_YAML_VALUES:
        # YAML aliases are shared, not copied, until something walks them (json.dumps, asdict):
        # a "billion laughs" of aliases, or an alias inside itself, would then never finish.
        raise MaskclfError(f"{p}: YAML expands to more than {MAX_YAML_VALUES} values (alias bomb or an alias "
                           "inside itself?); write the values out without &anchors/*aliases")
    return data


MAX_YAML_VALUES = 100_000  # a config holds a few hundred


def _expanded_size(obj: Any) -> int:
    """Values in ``obj`` counted as a JSON dump would visit them; stops counting past the limit."""
    n, stack = 0, [obj]
    while stack and n <= MAX_YAML_VALUES:
        o = stack.pop()
        n += 1
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set)):
            stack.extend(o)
    return n


# ----------------------------------------------------------------------------- run directories

ENSEMBLE_FILE = "ensemble.json"


def members_of(run: str | os.PathLike) -> list[dict]:
    """The member runs an ensemble run averages (from its ensemble.json); [] for an ordinary run."""
    members = read_json_object(Path(run) / ENSEMBLE_FILE).get("members")
    return members if isinstance(members, list) else []


def model_name_of(run: str | os.PathLike, name: str) -> str:
    """``name`` (a run's model family), or for an ensemble its members' families joined by "+" (as its
    ensemble.json names them; ensembles made before it did keep ``name``, the first member's)."""
    names = [m.get("model") for m in members_of(run) if isinstance(m, dict)]
    return "+".join(names) if names and all(isinstance(n, str) for n in names) else name


def read_json_object(path: Path) -> dict:
    """A JSON object file's content; {} when it is missing, unreadable or not an object."""
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}
