"""Where models live, searched in this order:

1. the folders in `P2T_MODELS_DIR` (separated by the OS path separator, ':' on Linux);
2. the user's models folder, `$P2T_HOME/models`; `P2T_HOME` defaults to `$XDG_DATA_HOME/p2t`,
   else `~/.local/share/p2t` (`p2t pull` installs models there);
3. the models bundled with p2t (the repository's `models/`, installed as `p2t_screen/bundled_models`).

A model is named by its directory's name; the first folder that has it wins.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, P2TWarning

CONFIG_FILE = "config.json"
DEFAULT_MODEL = "p2t-default"


def _bundled_dir() -> Path:
    """Where the bundled models are. They live in the repository's top-level `models/`, which
    pyproject.toml maps into the installed package as `p2t_screen/bundled_models` (package data),
    so a wheel or any non-editable install carries them beside its code. A checkout (an editable
    install, `make setup`, or the source on the path) has no such folder inside the package: there
    they are the repository's `models/`, found as the folder beside `p2t_screen/` next to the
    repository's pyproject.toml. The checkout is tested first because an old checkout may still
    hold an emptied `p2t_screen/bundled_models/` (caches, training state) that git leaves behind."""
    package = Path(__file__).resolve().parents[1]  # p2t_screen/
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "models").is_dir():
        return checkout / "models"
    return package / "bundled_models"


BUNDLED_DIR = _bundled_dir()


def p2t_home() -> Path:
    """p2t's own data folder: `P2T_HOME`, else `$XDG_DATA_HOME/p2t`, else `~/.local/share/p2t`."""
    if os.environ.get("P2T_HOME"):
        return Path(os.environ["P2T_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data).expanduser() / "p2t"


def user_models_dir() -> Path:
    """Where `p2t pull` installs models: `$P2T_HOME/models`."""
    return p2t_home() / "models"


def search_path() -> list[tuple[str, Path]]:
    """(origin, folder) pairs searched for models by name, first to last."""
    extra = [p for p in os.environ.get("P2T_MODELS_DIR", "").split(os.pathsep) if p]
    return ([("P2T_MODELS_DIR", Path(p).expanduser()) for p in extra]
            + [("user", user_models_dir()), ("bundled", BUNDLED_DIR)])


@dataclass(frozen=True)
class InstalledModel:
    """A model directory found on the search path."""

    name: str
    path: Path
    origin: str  # "P2T_MODELS_DIR", "user" or "bundled"


def installed_models() -> list[InstalledModel]:
    """Every model on the search path, each name once (the first folder wins). A folder that
    cannot be read, or an entry that is no folder, is skipped with one warning naming it: a
    broken entry on the path must not stop a screen that does not need it."""
    found: dict[str, InstalledModel] = {}
    for origin, root in search_path():
        for path in _model_dirs(origin, root):
            if path.name not in found:
                found[path.name] = InstalledModel(path.name, path, origin)
    return list(found.values())


def _model_dirs(origin: str, root: Path) -> list[Path]:
    """The model directories directly inside `root` (none where it is missing or unreadable)."""
    try:
        if not root.exists():  # the user's folder before any pull is normal; a folder named in P2T_MODELS_DIR is not
            if origin == "P2T_MODELS_DIR":
                _skip(origin, root, "it does not exist")
            return []
        if not root.is_dir():
            _skip(origin, root, "it is not a folder")
            return []
        entries = sorted(root.iterdir())
    except OSError as exc:
        _skip(origin, root, exc.strerror or str(exc))
        return []
    found = []
    for path in entries:
        try:
            if (path / CONFIG_FILE).is_file():
                found.append(path)
        except OSError as exc:
            _skip(origin, path, exc.strerror or str(exc))
    return found


def _skip(origin: str, path: Path, why: str) -> None:
    warnings.warn(f"models folder {path} ({origin}) skipped: {why}", P2TWarning, stacklevel=3)


def bundled_models() -> list[Path]:
    """Model directories shipped with p2t."""
    return sorted(p for p in BUNDLED_DIR.iterdir() if (p / CONFIG_FILE).is_file()) if BUNDLED_DIR.is_dir() else []


def where_looked() -> str:
    """The search path as a person reads it, for messages."""
    return "; ".join(f"{origin} {path}" for origin, path in search_path())


def resolve_model_path(ref: str | os.PathLike | None) -> Path:
    """A model directory path, or the name of an installed model (None: the default model)."""
    ref = DEFAULT_MODEL if ref is None else ref
    path = Path(ref).expanduser()
    try:
        if (path / CONFIG_FILE).is_file():
            return path
    except OSError as exc:
        raise ModelError(f"cannot read the model directory {path}: {exc.strerror or exc}") from None
    for model in installed_models():
        if model.name == str(ref):
            return model.path
    names = ", ".join(m.name for m in installed_models()) or "none"
    raise ModelError(f"no p2t model at '{ref}' (a directory with {CONFIG_FILE}); installed models: {names} "
                     f"(looked in: {where_looked()}); `p2t pull --list` shows models to download")
