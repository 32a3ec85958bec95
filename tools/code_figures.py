#!/usr/bin/env python3
"""Size figures of the package, for architecture reviews: long modules, long functions, and
task-kind tests outside `p2t_screen/tasks/` (which should be none: kinds own their logic).

  python tools/code_figures.py            # summary
  python tools/code_figures.py --list     # every long module and function by name
"""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "p2t_screen"
KIND_TEST = re.compile(r"kind ==|kind in|encoding ==")


def module_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def long_functions(path: Path, limit: int) -> list[tuple[str, int]]:
    """(qualified name, lines) of functions and methods longer than `limit` lines."""
    found = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = child.end_lineno - child.lineno + 1
                if size > limit:
                    found.append((f"{prefix}{child.name}", size))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text()), "")
    return found


def kind_tests(path: Path) -> list[str]:
    """Lines matching `kind ==`, `kind in` or `encoding ==` (the review's grep)."""
    return [f"{path.relative_to(ROOT.parent)}:{n}: {line.strip()}"
            for n, line in enumerate(path.read_text().splitlines(), 1) if KIND_TEST.search(line)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", action="store_true", help="name every long module and function")
    parser.add_argument("--module-limit", type=int, default=300)
    parser.add_argument("--function-limit", type=int, default=50)
    args = parser.parse_args()
    files = sorted(ROOT.rglob("*.py"))
    long_modules = [(p, module_lines(p)) for p in files if module_lines(p) > args.module_limit]
    functions = [(p, name, size) for p in files for name, size in long_functions(p, args.function_limit)]
    outside = [line for p in files if "tasks" not in p.relative_to(ROOT).parts[:1] for line in kind_tests(p)]
    print(f"modules: {len(files)}, lines: {sum(module_lines(p) for p in files)}")
    print(f"modules over {args.module_limit} lines: {len(long_modules)}")
    print(f"functions over {args.function_limit} lines: {len(functions)}")
    print(f"task-kind tests outside p2t_screen/tasks/: {len(outside)}")
    if args.list:
        for p, n in sorted(long_modules, key=lambda x: -x[1]):
            print(f"  module {p.relative_to(ROOT.parent)}: {n}")
        for p, name, size in sorted(functions, key=lambda x: -x[2]):
            print(f"  function {p.relative_to(ROOT.parent)}:{name}: {size}")
        for line in outside:
            print(f"  {line}")


if __name__ == "__main__":
    main()
