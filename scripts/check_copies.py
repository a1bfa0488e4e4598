"""Check that every ``# Copied from transformers.…`` body in moxi_hf still mirrors the installed transformers.

A mirrored function starts with a comment ``# Copied from transformers.<module>.<Class>.<method>``
right above it (and its decorators). Both bodies are compared line by line after normalising them:
comments, blank lines, docstrings and line breaks inside brackets do not count, nor a trailing comma
before a closing bracket; indentation does. Where the copy deliberately differs, the difference is
marked in the code::

    # differs from transformers (replaces 3 lines, 1a2b3c4d5e): why
    ...the copy's own lines...
    # same as transformers

The lines between the two markers (or from a marker to the end of the function) are the copy's own;
they stand for that many lines of the original, whose normalised text must still hash to the recorded
value. So the check fails when
transformers changes any line a copy mirrors or replaces, and when a copy changes outside its marked
differences. ``python scripts/check_copies.py`` prints the problems (exit 1); ``--show`` prints the
normalised original of every copy with line numbers and ``--digest ORIGINAL START STOP`` the hash of
a range of them, to write a new marker.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.util
import io
import re
import sys
import textwrap
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = re.compile(r"^\s*# Copied from (transformers(?:\.\w+)+)")
DIFFERS = re.compile(r"^# differs from transformers \(replaces (\d+) lines?, ([0-9a-f]{10})\)")
SAME = re.compile(r"^# same as transformers\b")
OPENING, CLOSING = {"(", "[", "{"}, {")", "]", "}"}


@dataclass(frozen=True)
class Marker:
    replaces: int | None  # None: "same as transformers" (the end of a difference)
    digest: str = ""
    line: int = 0  # line of the marker in its file


def digest(lines: list[str]) -> str:
    """The hash recorded in a ``differs`` marker for these normalised lines of the original."""
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]


def normalised(source: str, first_line: int = 1) -> list[str | Marker]:
    """The logical lines of a function's source (its decorators and body), each as its tokens joined by one
    space and indented by its depth, with the markers found between them."""
    items: list[str | Marker] = []
    tokens: list[str] = []
    commas: list[int] = []  # commas seen so far in each open bracket
    depth, previous_was_def = 0, False
    stream = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(source)).readline))
    for position, token in enumerate(stream):
        kind, text = token.type, token.string
        if kind == tokenize.INDENT:
            depth += 1
        elif kind == tokenize.DEDENT:
            depth -= 1
        elif kind == tokenize.COMMENT:
            line = first_line + token.start[0] - 1
            if not tokens and (found := DIFFERS.match(text)):
                items.append(Marker(int(found.group(1)), found.group(2), line))
            elif not tokens and SAME.match(text):
                items.append(Marker(None, "", line))
        elif kind == tokenize.NEWLINE:
            docstring = previous_was_def and len(tokens) == 1 and stream[position - 1].type == tokenize.STRING
            if tokens and not docstring:
                items.append("  " * depth + " ".join(tokens))
            previous_was_def = tokens[:1] == ["def"] or tokens[:2] == ["async", "def"]
            tokens = []
        elif kind not in (tokenize.NL, tokenize.ENDMARKER):
            if text in OPENING:
                commas.append(0)
            elif text in CLOSING and commas:
                commas.pop()
            elif text == "," and commas:
                following = next((t.string for t in stream[position + 1:]
                                  if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE)), "")
                commas[-1] += 1
                if following in CLOSING and commas[-1] > 1:
                    continue  # a trailing comma after several items is formatting (after one it makes a tuple)
            tokens.append(text)
    return items


def _function(tree: ast.Module, path: list[str]) -> ast.FunctionDef | ast.ClassDef | None:
    """The definition at ``path`` (e.g. ``["ViTModel", "forward"]``) in a module's tree."""
    body = tree.body
    found = None
    for name in path:
        found = next((node for node in body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                      and node.name == name), None)
        if found is None:
            return None
        body = found.body
    return found


def _span(node) -> tuple[int, int]:
    """First line (decorators included) and last line of a definition."""
    return min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)]), node.end_lineno


def transformers_source(qualified: str) -> str | None:
    """The source of ``transformers.<module>.<name>...`` in the installed transformers, or None."""
    parts = qualified.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:split])
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        text = Path(spec.origin).read_text()
        node = _function(ast.parse(text), parts[split:])
        if node is None:
            return None
        start, end = _span(node)
        return "\n".join(text.splitlines()[start - 1:end]) + "\n"
    return None


@dataclass
class Copy:
    path: Path
    line: int  # the "# Copied from" line
    original: str  # transformers.<module>.<name>...
    source: str  # the copy: decorators and body
    first_line: int


def find_copies(package: Path) -> Iterator[Copy]:
    """Every function of ``package`` marked ``# Copied from transformers...`` right above it."""
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        tree = None
        for number, line in enumerate(lines, start=1):
            found = COPIED.match(line)
            if not found:
                continue
            tree = tree or ast.parse(text)
            nodes = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
            after = [node for node in nodes if _span(node)[0] > number]
            node = min(after, key=lambda candidate: _span(candidate)[0], default=None)
            if node is None or any(not lines[i - 1].lstrip().startswith("#") for i in range(number + 1, _span(node)[0])):
                raise SystemExit(f"{path}:{number}: '# Copied from' must stand right above a function")
            # the copy starts under the "Copied from" line: a difference may be marked above its first line
            yield Copy(path, number, found.group(1), "\n".join(lines[number:_span(node)[1]]) + "\n", number + 1)


def problems_of(copy: Copy, source_of: Callable[[str], str | None] = transformers_source) -> list[str]:
    """What is wrong with one copy (empty when it mirrors the original, marked differences aside)."""
    where = f"{copy.path}:{copy.line}"
    original = source_of(copy.original)
    if original is None:
        return [f"{where}: {copy.original} is not in the installed transformers"]
    upstream = [line for line in normalised(original) if isinstance(line, str)]
    position, inside, found = 0, None, []
    for item in normalised(copy.source, copy.first_line):
        if isinstance(item, Marker):
            if item.replaces is None:
                if inside is None:
                    found.append(f"{copy.path}:{item.line}: '# same as transformers' without a difference before it")
                inside = None
                continue
            if inside is not None:
                found.append(f"{copy.path}:{item.line}: a difference starts inside another one")
            segment = upstream[position:position + item.replaces]
            if digest(segment) != item.digest:
                shown = "\n".join(f"    {line}" for line in segment)
                found.append(f"{copy.path}:{item.line}: the {item.replaces} line(s) of {copy.original} this difference "
                             f"replaces changed in transformers (hash now {digest(segment)}); review the copy:\n{shown}")
            position += item.replaces
            inside = item
        elif inside is None:
            expected = upstream[position] if position < len(upstream) else None
            if item != expected:
                found.append(f"{where}: the copy of {copy.original} differs from transformers, unmarked:\n"
                             f"    copy:         {item.strip()}\n    transformers: "
                             f"{expected.strip() if expected is not None else '(nothing more)'}")
                return found
            position += 1
    if position < len(upstream):
        found.append(f"{where}: transformers' {copy.original} has {len(upstream) - position} more line(s) than the "
                     f"copy, from: {upstream[position].strip()}")
    return found


def check(package: Path, source_of: Callable[[str], str | None] = transformers_source) -> list[str]:
    """Every problem of every copy in ``package``."""
    return [problem for copy in find_copies(package) for problem in problems_of(copy, source_of)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "moxi_hf")
    parser.add_argument("--show", action="store_true", help="print each original, normalised, with line numbers")
    parser.add_argument("--digest", nargs=3, metavar=("ORIGINAL", "START", "STOP"),
                        help="the hash of lines START..STOP-1 of ORIGINAL (transformers.<module>.<name>), normalised")
    args = parser.parse_args(argv)
    if args.digest:
        original, start, stop = args.digest
        lines = [line for line in normalised(transformers_source(original) or "") if isinstance(line, str)]
        print(digest(lines[int(start):int(stop)]))
        return 0
    if args.show:
        for copy in find_copies(args.package):
            lines = [line for line in normalised(transformers_source(copy.original) or "") if isinstance(line, str)]
            print(f"{copy.path}:{copy.line} {copy.original}")
            for number, line in enumerate(lines):
                print(f"  {number:3d}  {line}")
    found = check(args.package)
    for problem in found:
        print(problem, file=sys.stderr)
    print(f"{len(list(find_copies(args.package)))} copies checked, {len(found)} problem(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
