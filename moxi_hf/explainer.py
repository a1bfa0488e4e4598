"""The Explainer: model + processor + removal adapter + reward + players, and ``explain``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .errors import MoXIError
from .explanation import Explanation
from .images import ImageInput, check_pixel_values, image_name, model_view, preprocess
from .loading import (
    ExplainableModel,
    build_adapter,
    load_explainable_model,
    resolve_device,
    resolve_dtype,
)
from .methods import Method, get_method
from .methods.base import check_curve
from .metrics.curves import heatmap_from_order, measure_curves, patches_needed
from .options import DEFAULT_INTERACTION_TOP
from .players import Players
from .removal import RemovalAdapter
from .value import DEFAULT_MAX_TOKENS, ValueFunction, check_reward

__all__ = ["Explainer"]


class Explainer:
    """Explains image classifiers with MoXI and the baselines.

    Build it with :meth:`from_pretrained` (any HF image classifier, local folder or Hub id) or
    from a loaded model. ``players_grid`` groups patches into coarser players (it must divide the
    patch grid). ``max_batch_size``/``max_tokens`` bound the work of one forward pass.

    Example::

        explainer = Explainer.from_pretrained("google/vit-base-patch16-224")
        explanation = explainer.explain("cat.jpg", method="moxi", curve="insertion")
        explanation.plot("cat_moxi.png")
    """

    def __init__(
        self,
        model: torch.nn.Module,
        processor=None,
        adapter: RemovalAdapter | None = None,
        *,
        masking: str = "auto",
        reward: str = "log-odds",
        players_grid: int | tuple[int, int] | None = None,
        max_batch_size: int = 1024,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        name: str | None = None,
        pixel_grid: int | tuple[int, int] | None = None,
        baseline: str = "zero",
    ):
        if adapter is None:
            adapter = build_adapter(model, masking, pixel_grid, baseline, players_grid=players_grid)
        self.model = adapter.model
        self.model.eval()
        self.processor = processor
        self.adapter = adapter
        self.reward = check_reward(reward)
        self.players = Players.build(adapter.grid, players_grid)
        self.max_batch_size = max_batch_size
        self.max_tokens = max_tokens
        self.name = name or getattr(getattr(self.model, "config", None), "_name_or_path", None) or type(self.model).__name__

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        masking: str = "auto",
        reward: str = "log-odds",
        players_grid: int | tuple[int, int] | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        max_batch_size: int = 1024,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        baseline: str = "zero",
        pixel_grid: int | tuple[int, int] | None = None,
        trust_remote_code: bool = False,
        **from_pretrained_kwargs,
    ) -> Explainer:
        """Load any HF image classifier (ViT-family models get token removal, others pixel masking).

        ``trust_remote_code=True`` lets a model that ships its own Python code run it; without it such
        a model is refused with a one-line :class:`MoXIError` (no question on stdin).
        """
        check_reward(reward)
        loaded: ExplainableModel = load_explainable_model(
            path_or_id, masking=masking, dtype=resolve_dtype(dtype), device=resolve_device(device),
            grid=pixel_grid, baseline=baseline, players_grid=players_grid, trust_remote_code=trust_remote_code,
            **from_pretrained_kwargs,
        )
        return cls(loaded.model, loaded.processor, loaded.adapter, reward=reward, players_grid=players_grid,
                   max_batch_size=max_batch_size, max_tokens=max_tokens, name=loaded.name)

    # -- inputs ---------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        return self.adapter.num_labels

    def label_name(self, label: int) -> str | None:
        id2label = getattr(self.model.config, "id2label", None) or {}
        name = id2label.get(label, id2label.get(str(label)))
        return None if name is None else str(name)

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[torch.Tensor, list]:
        """(pixel_values (B, C, H, W), RGB PIL images) for paths, PIL images or arrays."""
        return preprocess(self.processor, list(images))

    def predict(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Predicted class (B,) on the whole images."""
        return self.adapter.full_logits(pixel_values).argmax(dim=1).cpu()

    def value_function(self, pixel_values: torch.Tensor, labels: Sequence[int] | torch.Tensor) -> ValueFunction:
        """The game v(S) of these images and labels (see :class:`moxi_hf.value.ValueFunction`)."""
        return ValueFunction(self.adapter, pixel_values, labels, self.players, self.reward,
                             self.max_batch_size, self.max_tokens)

    def _check_labels(self, labels: Sequence[int | None], predicted: torch.Tensor) -> list[int]:
        resolved = []
        for label, guess in zip(labels, predicted.tolist()):
            if label is None:
                resolved.append(int(guess))
                continue
            if isinstance(label, bool) or not isinstance(label, (int, torch.Tensor)) and not hasattr(label, "__index__"):
                raise MoXIError(f"label must be an integer class index, got {label!r}")
            label = int(label)
            if not 0 <= label < self.num_labels:
                raise MoXIError(
                    f"label {label} is out of range: the model has {self.num_labels} classes (0..{self.num_labels - 1})"
                )
            resolved.append(label)
        return resolved

    # -- explaining -------------------------------------------------------------------------------

    def explain(
        self,
        image: ImageInput | torch.Tensor,
        method: str | Method = "moxi",
        curve: str = "insertion",
        label: int | None = None,
        interactions: bool = False,
        interaction_top: int = DEFAULT_INTERACTION_TOP,
        **method_options,
    ) -> Explanation:
        """Explain one image (path, PIL image, array, or processed pixel_values (C, H, W)).

        ``interactions=True`` also fills ``explanation.interactions`` (the first ``interaction_top``
        players of the order) and, for MoXI, ``explanation.gains`` (see :mod:`moxi_hf.interactions`).
        """
        if isinstance(image, torch.Tensor) and image.ndim == 3:
            image = image.unsqueeze(0)
        return self.explain_batch([image] if not isinstance(image, torch.Tensor) else image, method, curve,
                                  None if label is None else [label], interactions=interactions,
                                  interaction_top=interaction_top, **method_options)[0]

    def explain_batch(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        method: str | Method = "moxi",
        curve: str = "insertion",
        labels: Sequence[int | None] | None = None,
        progress: bool = False,
        interactions: bool = False,
        interaction_top: int = DEFAULT_INTERACTION_TOP,
        **method_options,
    ) -> list[Explanation]:
        """Explain several images together (their coalitions share forward passes).

        ``images``: paths / PIL images / arrays, or processed pixel_values (B, C, H, W).
        ``labels``: target class per image; None (or a None entry) = the model's prediction.
        """
        check_curve(curve)
        if isinstance(method, str) and method == "moxi" and progress:
            method_options.setdefault("progress", True)
        method_obj = get_method(method, **method_options)
        names: list[str | None]
        if isinstance(images, torch.Tensor):
            pixel_values = check_pixel_values(images, getattr(self.model.config, "num_channels", None))
            pil_images = [None] * images.shape[0]
            names = [None] * images.shape[0]
        else:
            images = list(images)
            if not images:
                raise MoXIError("no images to explain")
            pixel_values, pil_images = self.preprocess(images)
            names = [image_name(i) for i in images]
        if labels is not None and len(labels) != pixel_values.shape[0]:
            raise MoXIError(f"got {len(labels)} labels for {pixel_values.shape[0]} images")
        predicted = self.predict(pixel_values)
        resolved = self._check_labels(labels if labels is not None else [None] * len(predicted), predicted)
        game = self.value_function(pixel_values, resolved)
        attribution = method_obj.attribute(game, curve)
        explanations = self._explanations(game, attribution, method_obj, curve, predicted, names, pil_images,
                                          self.model_views(pil_images) if pil_images[0] is not None else None)
        if interactions:
            from .interactions import attach_interactions

            attach_interactions(explanations, game, attribution, curve, interaction_top)
        return explanations

    def model_views(self, images: Sequence) -> list:
        """The pictures the model sees (PIL RGB, the processor's resize + crop), one per input image."""
        from PIL import Image

        return [Image.fromarray(model_view(image, self.processor)) for image in images]

    def _explanations(self, game, attribution, method, curve, predicted, names, pil_images,
                      views=None) -> list[Explanation]:
        order = attribution.order
        lengths = attribution.lengths
        probabilities, predictions = attribution.curve_probabilities, attribution.curve_predictions
        if probabilities is None:
            measured = measure_curves(game, order, curve)
            probabilities, predictions = measured.probabilities, measured.predictions
        grid = self.players.grid
        explanations = []
        for index in range(game.n_images):
            length = int(lengths[index]) if lengths is not None else order.shape[1]
            image_order = order[index, :length]
            image_predictions = predictions[index, : length + 1]
            label = int(game.labels[index])
            needed = patches_needed(image_predictions, label, curve, game.n_players)
            heat = heatmap_from_order(image_order, needed, game.n_players).view(*grid)
            options = method.option_values()
            explanations.append(Explanation(
                method=method.name,
                curve=curve,
                label=label,
                label_name=self.label_name(label),
                predicted=int(predicted[index]),
                order=image_order.tolist(),
                scores=None if attribution.scores is None else attribution.scores[index].tolist(),
                heatmap=heat.tolist(),
                patches_needed=needed,
                grid=grid,
                patch_grid=self.players.patch_grid,
                curve_probabilities=probabilities[index, : length + 1].tolist(),
                curve_predictions=image_predictions.tolist(),
                model=self.name,
                reward=self.reward,
                masking=self.adapter.masking,
                image=names[index],
                options=options,
                settings=dict(attribution.settings),
                pil_image=pil_images[index],
                display_image=views[index] if views is not None else None,
            ))
        return explanations
