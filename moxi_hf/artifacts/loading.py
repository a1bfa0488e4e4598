"""An artifact folder loaded back (local folder or Hub dataset repo), with its plotting and sharing calls."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MoXIError
from .card import auc_table, looks_like_repo_id
from .checks import check_artifact_files, first_line
from .folder import check_artifact_dir
from .schema import (
    DATA_FILE,
    IMAGES_FILE,
    PICTURE_COLUMN,
    PLOTS_DIR,
    row_to_explanation,
)

__all__ = ["Artifacts", "load_artifacts"]


@dataclass
class Artifacts:
    """An artifact folder: ``rows`` (datasets.Dataset), ``curves``, ``config``, ``card``, ``path``, ``images``.

    The pictures the model saw are a ``picture`` column of ``rows`` (small runs) or ``images`` (a
    Dataset with ``dataset_index``, ``image``, ``picture``); folders without pictures (schema
    version 1, Hub datasets not embedded) have neither.
    """

    path: Path
    rows: object
    curves: dict
    config: dict
    card: object | None = None
    plots: list[Path] = field(default_factory=list)
    images: object | None = None

    @classmethod
    def from_pretrained(cls, dir_or_repo_id: str | os.PathLike, **kwargs) -> Artifacts:
        """Alias of :func:`load_artifacts`."""
        return load_artifacts(dir_or_repo_id, **kwargs)

    @property
    def label_names(self) -> list[str] | None:
        from datasets import ClassLabel

        feature = self.rows.features["label"]
        return list(feature.names) if isinstance(feature, ClassLabel) else self.config.get("label_names")

    @property
    def schema_version(self) -> int:
        return int(self.config.get("schema_version", 1))

    def auc_table(self) -> dict[str, dict[str, dict]]:
        return auc_table(self.curves)

    def pictures(self) -> dict[int, object]:
        """dataset_index -> the picture the model saw (PIL), for folders that hold them."""
        if PICTURE_COLUMN in self.rows.features:
            found: dict[int, object] = {}
            for index, position in zip(self.rows["dataset_index"], range(len(self.rows))):
                if int(index) not in found:
                    found[int(index)] = self.rows[position][PICTURE_COLUMN]
            return found
        if self.images is None:
            return {}
        return {int(index): picture for index, picture in zip(self.images["dataset_index"], self.images["picture"])}

    def explanations(self, method: str | None = None, curve: str | None = None) -> list:
        """The rows (of ``method`` / ``curve`` when given) as :class:`moxi_hf.Explanation` objects, with
        ``gains``/``interactions`` where the rows have them and ``display_image`` where the folder holds pictures."""
        pictures = self.pictures()
        out = []
        for row in self.rows.select_columns([name for name in self.rows.column_names if name != PICTURE_COLUMN]):
            if (method is not None and row["method"] != method) or (curve is not None and row["curve"] != curve):
                continue
            explanation = row_to_explanation(row, self.label_names, self.config)
            explanation.display_image = pictures.get(int(row["dataset_index"]))
            out.append(explanation)
        return out

    # -- plots ----------------------------------------------------------------------------------

    def plot_curves(self, metric: str = "accuracy", title: str | None = None):
        """Mean insertion/deletion curves (``metric``: accuracy or confidence) as a matplotlib Figure."""
        from ..plotting import plot_curves

        return plot_curves(self.curves, metric, title)

    def plot_heatmaps(self, curve: str | None = None, max_images: int = 6):
        """Heatmaps of the first ``max_images`` images × methods for ``curve`` (default: the first) as a Figure."""
        from ..plotting import plot_heatmap_grid

        methods = self.config.get("methods") or list(dict.fromkeys(self.rows["method"]))
        curve = curve or (self.config.get("curves") or list(dict.fromkeys(self.rows["curve"])))[0]
        rows = self.rows.to_list() if hasattr(self.rows, "to_list") else list(self.rows)
        return plot_heatmap_grid(rows, methods, curve, self.pictures(), self.label_names, max_images)

    # -- sharing --------------------------------------------------------------------------------

    def save_pretrained(self, output_dir: str | os.PathLike) -> Path:
        """Copy the folder (without hidden files) to ``output_dir``; returns it."""
        output_dir = Path(output_dir)
        if output_dir.resolve() == Path(self.path).resolve():
            return output_dir
        shutil.copytree(self.path, output_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
        return output_dir

    def push_to_hub(self, repo_id: str, private: bool = False, revision: str | None = None,
                    commit_message: str | None = None, token: str | None = None, endpoint: str | None = None,
                    timeout: float | None = None) -> str:
        """Upload the folder to the dataset repo ``repo_id`` (as ``moxi push``; ``timeout``: seconds a request
        may go without progress, default :data:`moxi_hf.artifacts.hub.HUB_TIMEOUT`); returns the repo URL."""
        from .hub import HUB_TIMEOUT, push_artifacts

        return push_artifacts(self.path, repo_id, private=private, revision=revision, commit_message=commit_message,
                              token=token, endpoint=endpoint, timeout=timeout or HUB_TIMEOUT)


def _with_num_players(curves: dict) -> dict:
    """Summaries written before ``num_players`` was recorded get it from their curve length."""
    for by_curve in curves.values():
        for entry in by_curve.values() if isinstance(by_curve, dict) else ():
            if isinstance(entry, dict) and "num_players" not in entry and entry.get("accuracy"):
                entry["num_players"] = len(entry["accuracy"]) - 1
    return curves


def load_artifacts(dir_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None,
                   endpoint: str | None = None, cache_dir: str | os.PathLike | None = None) -> Artifacts:
    """Load an artifact folder from a local path or a Hub dataset repo (``snapshot_download``).

    A repo id (``USER/NAME``) is downloaded with ``repo_type="dataset"`` at ``revision``, from
    ``endpoint`` (default ``HF_ENDPOINT`` / huggingface.co). Folders of every schema version load.
    Raises MoXIError when the folder or repo is not a complete artifact folder, or one line naming a
    damaged file (:func:`check_artifact_files`).
    """
    source = os.fspath(dir_or_repo_id)
    path = Path(source).expanduser()
    if not path.exists():
        if not looks_like_repo_id(source):
            raise MoXIError(f"{source} is neither an existing folder nor a Hub dataset repo id (USER/NAME)")
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError

        try:
            path = Path(snapshot_download(source, repo_type="dataset", revision=revision, token=token,
                                          endpoint=endpoint, cache_dir=cache_dir))
        except HfHubHTTPError as error:
            status = getattr(getattr(error, "response", None), "status_code", "?")
            raise MoXIError(f"could not download dataset repo {source} (HTTP {status}): "
                            f"{str(error).strip().splitlines()[0]}") from error
    path = check_artifact_dir(path)
    config, curves, card = check_artifact_files(path)
    rows = _load_parquet(path, DATA_FILE)
    images = _load_parquet(path, IMAGES_FILE) if (path / IMAGES_FILE).is_file() else None
    plots = sorted((path / PLOTS_DIR).glob("*.png"))
    return Artifacts(path=path, rows=rows, curves=_with_num_players(curves), config=config, card=card, plots=plots,
                     images=images)


def _load_parquet(folder: Path, name: str):
    from datasets import load_dataset

    try:
        return load_dataset("parquet", data_files=str(folder / name), split="train")
    except Exception as error:  # noqa: BLE001 - datasets wraps what it cannot read in many kinds
        raise MoXIError(f"{folder / name} could not be loaded as a dataset ({first_line(error)})") from None
