"""The package's shape: rooms import only rooms below them, and task kinds are asked, never named."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "p2t_screen"
# The data flow, lowest first: a module may import its own room and the rooms before it.
ROOMS = ["version", "errors", "io", "tasks", "trust", "model", "decode", "screen", "results", "bench", "train", "interop", "cli"]


def room_of(module: str) -> str | None:
    """'p2t_screen.screen.pipeline' -> 'screen'; top-level facades (__init__, distributed) have none."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return parts[1] if parts[1] in ROOMS else None


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every p2t_screen import in a file, relative ones resolved."""
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            found += [(node.lineno, n if room_of(n) and room_of(target) is None else target) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return [(line, name) for line, name in found if name.startswith("p2t_screen")]


def test_rooms_import_only_rooms_below_them():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("p2t_screen", *path.relative_to(PACKAGE).with_suffix("").parts))
        own = room_of(module)
        if own is None:
            continue
        for line, target in imported_modules(path, module):
            other = room_of(target)
            if other is None or ROOMS.index(other) > ROOMS.index(own):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_code_outside_tasks_tests_a_task_kind_by_name():
    pattern = re.compile(r"kind ==|kind in|encoding ==")
    found = [f"{p.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
             for p in sorted(PACKAGE.rglob("*.py")) if "tasks" not in p.relative_to(PACKAGE).parts[:1]
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def test_the_architecture_document_names_every_module():
    """docs/architecture.md describes every module: a module it does not name is one a newcomer
    cannot find there (`__init__.py` files of rooms count as their room)."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) > 1:
            name = f"`{rel.parts[0]}/`"
        else:
            name = f"`{rel.name}`"
        # a module is named in its room's paragraph (rooms share file names such as config.py)
        room = f"**`{rel.parts[0]}/`" if len(rel.parts) > 1 else "**Bottom.**"
        start = text.find(room)
        paragraph = text[start: text.find("\n\n", start)] if start >= 0 else ""
        if name not in paragraph:
            missing.append(str(rel))
    assert not missing, f"not described in docs/architecture.md: {missing}"
    for room in ROOMS:
        assert f"`{room}`" in text, room
