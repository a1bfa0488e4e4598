"""Output folders of ``moxi explain``, ``moxi compare`` and ``moxi evaluate``: what a run may write into and
what it owns.

A run owns only the files it wrote. ``explain`` and ``compare`` list them in a hidden manifest
(:data:`MANIFEST_FILE`, never published); a rerun replaces exactly those and leaves every other file
and folder where it is. A folder that holds no output of the command is refused unless
``--overwrite`` (clear it) is given; a folder that holds the run's own inputs is refused before any
work, naming them. The run is written to a hidden staging folder *inside* the output folder (so an
unwritable location is found before computing) and moved into place at the end; an interrupted run
moves what it finished.

``evaluate`` resumes instead: its folder keeps ``config.json`` and hidden ``.partial/`` state; a
rerun with other settings (or another model/dataset folder of the same name) is refused, and its
``--overwrite`` removes only what an evaluation writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MoXIError
from ..fileio import read_json, write_json
from .schema import CARD_FILE, CONFIG_FILE, CURVES_FILE, DATA_FILE, IMAGES_FILE, PARTIAL_DIR, PLOTS_DIR

__all__ = ["EVALUATION_FILES", "IDENTITY_FILE", "MANIFEST_FILE", "OutputDir", "check_writable", "prepare_output_dir"]

#: the files a run of ``explain``/``compare`` wrote (hidden: never loaded as data, never uploaded)
MANIFEST_FILE = ".moxi-manifest.json"
STAGING_PREFIX = ".moxi-staging-"
#: what an evaluation writes (``--overwrite`` removes these and nothing else)
EVALUATION_FILES = (os.path.dirname(DATA_FILE), PLOTS_DIR, PARTIAL_DIR, CURVES_FILE, CONFIG_FILE, CARD_FILE)
#: the absolute local model/dataset folders of an evaluation (resume tells two folders of the same name apart)
IDENTITY_FILE = f"{PARTIAL_DIR}/source.json"
#: files of an ``explain``/``compare`` output written before manifests existed: the artifact files and,
#: in each image's folder, the files the commands write there
_LEGACY_TOP = (DATA_FILE, IMAGES_FILE, CURVES_FILE, CONFIG_FILE, CARD_FILE)
_LEGACY_PER_IMAGE = ("explanation.json", "heatmap.png", "interactions.png", "compare.png", "compare.json",
                     "compare_interactions.png")


def check_writable(folder: Path) -> None:
    """Create ``folder`` (and its parents) and check a file can be written in it; a MoXIError saying where not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".moxi-write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise MoXIError(f"cannot write to the output dir {str(folder)!r}: {reason}; choose another --output-dir") from None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _config_kind(folder: Path) -> str | None:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    return config.get("kind") if isinstance(config, dict) else None


def _files(folder: Path) -> list[str]:
    """Every file below ``folder`` (POSIX paths relative to it), staging folders left out."""
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if (path.is_file() or path.is_symlink()) and not path.relative_to(folder).parts[0].startswith(
                      STAGING_PREFIX))


def _legacy_files(folder: Path) -> list[str]:
    found = [name for name in _LEGACY_TOP if (folder / name).is_file()]
    found += [path.relative_to(folder).as_posix() for path in sorted(folder.glob(f"{PLOTS_DIR}/*.png"))]
    found += [path.relative_to(folder).as_posix() for name in _LEGACY_PER_IMAGE for path in sorted(folder.glob(f"*/{name}"))]
    return sorted(set(found))


def _in_folder(folder: Path, name: object) -> bool:
    """A manifest entry names an existing file below ``folder`` (never outside it, whatever the manifest says)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
        return False
    path = folder / name
    return (path.is_file() or path.is_symlink()) and _inside(path.parent.resolve(), folder.resolve())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _prune_empty_parents(path: Path, root: Path) -> None:
    """Remove the folders above ``path`` up to ``root`` (excluded) that are left empty."""
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty: something that is not ours is in it
            return


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl+C waits while the folder is being swapped (main thread only), then takes effect."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda *args: received.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


@dataclass
class OutputDir:
    """An output folder checked for one run of ``command`` (see :func:`prepare_output_dir`).

    ``owned``: the files of the previous output that this run replaces (relative paths). ``note``:
    what to tell the user before the folder is written (replacing, clearing), if anything.
    """

    path: Path
    command: str
    owned: list[str] = field(default_factory=list)
    note: str | None = None
    created: bool = False

    # -- explain / compare: staged, then moved into place ----------------------------------------

    @contextlib.contextmanager
    def staged(self) -> Iterator[Path]:
        """A hidden folder inside the output folder to write the run into; :meth:`commit` is called when the
        block ends without an error, otherwise the staging folder (and a folder this run created) goes."""
        staging = self.path / f"{STAGING_PREFIX}{os.getpid()}"
        _remove(staging)
        try:
            staging.mkdir(parents=True)
        except OSError as error:
            raise MoXIError(f"cannot write to the output dir {str(self.path)!r}: {error.strerror}") from None
        try:
            yield staging
            self.commit(staging)
        finally:
            _remove(staging)
            if self.created and self.path.is_dir() and not any(self.path.iterdir()):
                self.path.rmdir()

    def commit(self, staging: Path) -> list[str]:
        """Replace the files this run owns by those in ``staging``; returns the files now in the manifest.

        At every moment the manifest lists every file of the command in the folder, so a rerun after
        a crash still knows which files are its own.
        """
        new = _files(staging)
        manifest = self.path / MANIFEST_FILE
        with _uninterrupted():
            if self.note:
                import sys

                print(self.note, file=sys.stderr)
            write_json(manifest, {"command": self.command, "files": sorted(set(self.owned) | set(new))})
            for name in sorted(set(self.owned) - set(new)):
                _remove(self.path / name)
                _prune_empty_parents(self.path / name, self.path)
            for name in new:
                target = self.path / name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, target)
            write_json(manifest, {"command": self.command, "files": new})
        self.owned = new
        return new

    # -- evaluate: resumed in place ----------------------------------------------------------------

    def start_evaluation(self, identity: dict, main: bool = True, clear: bool = False) -> None:
        """Before an evaluation writes: ``clear`` removes what a previous evaluation wrote (``--overwrite``);
        the main process records ``identity`` (absolute model/dataset folders) in the hidden state."""
        if main and clear:
            for name in EVALUATION_FILES:
                _remove(self.path / name)
        if main:
            write_json(self.path / IDENTITY_FILE, identity)


def _refuse_inputs_inside(output_dir: Path, inputs: Sequence[str | os.PathLike]) -> None:
    folder = output_dir.resolve()
    held = []
    for given in inputs:
        path = Path(given).resolve()
        if _inside(path, folder) or (path.is_dir() and _inside(folder, path)):
            held.append(str(given))
    if held:
        shown = ", ".join(repr(name) for name in held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise MoXIError(f"the output dir {str(output_dir)!r} holds input(s) of this run ({shown}); results must not "
                        "mix with what is explained: choose another --output-dir")


def _settings_diff(old: dict, new: dict) -> list[str]:
    return sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))


def _check_evaluation(output_dir: Path, settings: dict, identity: dict | None) -> None:
    previous = read_json(output_dir / CONFIG_FILE) if (output_dir / CONFIG_FILE).is_file() else None
    if previous is None:
        if any(output_dir.iterdir()):
            raise MoXIError(f"output dir {str(output_dir)!r} is not empty and holds no moxi evaluation; "
                            "use another --output-dir or --overwrite")
        return
    if not isinstance(previous, dict) or previous.get("kind") != "evaluate":
        raise MoXIError(f"{str(output_dir)!r} holds a config.json that is not from moxi evaluate; "
                        "use another --output-dir or --overwrite")
    differs = _settings_diff({key: previous.get(key) for key in settings}, settings)
    kept = read_json(output_dir / IDENTITY_FILE)
    if identity and isinstance(kept, dict):
        differs += [key for key in identity if key in kept and kept[key] != identity[key] and key not in differs]
    if differs:
        raise MoXIError(
            f"output dir {str(output_dir)!r} holds results of a different configuration (differs in: "
            f"{', '.join(differs)}); rerun with the same options to resume, or use another --output-dir or --overwrite")


def prepare_output_dir(output_dir: str | os.PathLike, command: str, *, overwrite: bool = False,
                       inputs: Sequence[str | os.PathLike] = (), settings: dict | None = None,
                       identity: dict | None = None) -> OutputDir:
    """Check ``output_dir`` for a run of ``moxi <command>`` before any work, and create it (writable).

    ``inputs``: the run's local input files/folders; an output folder holding one is refused (even with
    ``overwrite``). ``explain``/``compare``: the folder must be empty, hold this command's previous
    output (its files are replaced, nothing else), or ``overwrite`` is given (everything in it is
    replaced). ``evaluate``: ``settings``/``identity`` must match the run already there (it resumes),
    unless ``overwrite``.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise MoXIError(f"output dir {str(path)!r} is a file")
    _refuse_inputs_inside(path, inputs)
    created = not path.exists()
    plan = OutputDir(path, command, created=created)
    if not created:
        if command == "evaluate":
            if not overwrite:
                _check_evaluation(path, settings or {}, identity)
        else:
            _take_over(plan, overwrite)
    check_writable(path)
    return plan


def _take_over(plan: OutputDir, overwrite: bool) -> None:
    """What an ``explain``/``compare`` run replaces in an existing folder (``plan.owned``), or a refusal."""
    path, command = plan.path, plan.command
    for stale in path.glob(f"{STAGING_PREFIX}*"):  # left by a run that was killed
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(stale.name[len(STAGING_PREFIX):]), 0)
            continue  # that run is still going
        _remove(stale)
    manifest = read_json(path / MANIFEST_FILE) if (path / MANIFEST_FILE).is_file() else None
    if overwrite:
        plan.owned = _files(path)
        plan.note = f"moxi {command}: --overwrite: clearing {path}" if plan.owned else None
    elif isinstance(manifest, dict) and manifest.get("command") == command:
        plan.owned = [name for name in manifest.get("files", []) if _in_folder(path, name)]
        plan.note = f"moxi {command}: replacing the previous moxi {command} output in {path}"
    elif manifest is None and _config_kind(path) == command:
        plan.owned = _legacy_files(path)
        plan.note = f"moxi {command}: replacing the previous moxi {command} output in {path}"
    elif any(entry.name != MANIFEST_FILE for entry in path.iterdir()):
        raise MoXIError(f"output dir {str(path)!r} is not empty and is not a moxi {command} output; use another "
                        "--output-dir, or --overwrite to delete what it holds")
