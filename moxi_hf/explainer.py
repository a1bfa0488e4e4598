"""The Explainer: model + processor + removal adapter + reward + players, and ``explain``."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence

import torch

from .cost import Cost, curve_cost
from .errors import MoXIError
from .explanation import Explanation, ExplanationSet, explanations_of
from .images import ImageInput, check_pixel_values, image_name, model_view, preprocess
from .interactions import attach_interactions, interactions_cost
from .labels import label_text
from .loading import (
    ExplainableModel,
    build_adapter,
    build_zero_shot_adapter,
    is_zero_shot_model,
    load_explainable_model,
    resolve_device,
    resolve_dtype,
)
from .methods import METHODS, Attribution, Method, MoXI, get_method, method_with_options
from .metrics.curves import measure_final_orders
from .options import DEFAULT_INTERACTION_TOP, DEFAULT_REWARD, METHOD_NAMES, check_curve
from .players import Players
from .progress import WorkBar
from .removal import RemovalAdapter
from .value import DEFAULT_MAX_TOKENS, ChunkCallback, ValueFunction, check_label, check_reward
from .zero_shot import ZeroShotLabels, check_candidate_reward

__all__ = ["Explainer"]


class Explainer(ZeroShotLabels):
    """Explains image classifiers and CLIP/SigLIP zero-shot models with MoXI and the baselines.

    Build it with :meth:`from_pretrained` (any HF image classifier or CLIP/SigLIP model, local folder
    or Hub id) or from a loaded model (a zero-shot one with its ``tokenizer``; a stock model's
    weights are shared, not copied). ``players_grid`` groups patches into coarser players (it must
    divide the patch grid). ``max_batch_size``/``max_tokens`` bound the work of one forward pass.
    A zero-shot model's classes are ``candidate_labels`` (texts) put into ``hypothesis_template``
    (a text with ``{}``, or a list of them whose text features are averaged); the same arguments on
    :meth:`explain_methods` (and ``explain``, ``explain_batch``) win for that call.

    :meth:`explain_methods` is the one entry point that explains (several methods × curves on a
    batch of images); :meth:`explain` and :meth:`explain_batch` call it.

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
        reward: str = DEFAULT_REWARD,
        players_grid: int | tuple[int, int] | None = None,
        max_batch_size: int = 1024,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        name: str | None = None,
        pixel_grid: int | tuple[int, int] | None = None,
        baseline: str = "zero",
        tokenizer=None,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | Sequence[str] | None = None,
    ):
        labelled = candidate_labels is not None or hypothesis_template is not None
        if adapter is None and is_zero_shot_model(model):
            adapter = build_zero_shot_adapter(model, tokenizer, candidate_labels, hypothesis_template, masking)
            labelled = False
        elif adapter is None:
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
        self.tokenizer = tokenizer
        if labelled:
            self.adapter = self.with_candidate_labels(candidate_labels, hypothesis_template).adapter
        if self.zero_shot:
            check_candidate_reward(adapter.link, len(self.adapter.labels) or 2, self.reward)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | os.PathLike,
        *,
        masking: str = "auto",
        reward: str = DEFAULT_REWARD,
        players_grid: int | tuple[int, int] | None = None,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        max_batch_size: int = 1024,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        baseline: str = "zero",
        pixel_grid: int | tuple[int, int] | None = None,
        trust_remote_code: bool = False,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | Sequence[str] | None = None,
        **from_pretrained_kwargs,
    ) -> Explainer:
        """Load any HF image classifier (ViT-family models get token removal, others pixel masking) or a
        CLIP/SigLIP zero-shot model (token removal; its classes are ``candidate_labels`` in
        ``hypothesis_template``, default: those its config records, else the pipeline's prompt).

        ``trust_remote_code=True`` lets a model that ships its own Python code run it; without it such
        a model is refused with a one-line :class:`MoXIError` (no question on stdin).
        """
        check_reward(reward)
        loaded: ExplainableModel = load_explainable_model(
            path_or_id, masking=masking, dtype=resolve_dtype(dtype), device=resolve_device(device),
            grid=pixel_grid, baseline=baseline, players_grid=players_grid, trust_remote_code=trust_remote_code,
            candidate_labels=candidate_labels, hypothesis_template=hypothesis_template, **from_pretrained_kwargs,
        )
        return cls(loaded.model, loaded.processor, loaded.adapter, reward=reward, players_grid=players_grid,
                   max_batch_size=max_batch_size, max_tokens=max_tokens, name=loaded.name, tokenizer=loaded.tokenizer)

    @classmethod
    def from_pipeline(cls, pipe, *, candidate_labels: Sequence[str] | None = None,
                      hypothesis_template: str | Sequence[str] | None = None, **explainer_options) -> Explainer:
        """Explain what a transformers ``image-classification`` or ``zero-shot-image-classification`` pipeline
        predicts: its own weights (shared, not copied), image processor (and tokenizer), device, dtype and scores
        (its ``function_to_apply``, else its default rule; CLIP's softmax, SigLIP's sigmoid). A zero-shot
        pipeline's classes are ``candidate_labels`` (here or per call) in ``hypothesis_template`` (default: the
        pipeline's). ``explainer_options``: ``masking``, ``reward``, ``players_grid``, ... as for
        :meth:`from_pretrained`."""
        from .from_pipeline import explainer_from_pipeline

        return explainer_from_pipeline(cls, pipe, candidate_labels, hypothesis_template, **explainer_options)

    # -- inputs ---------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        return self.adapter.num_labels

    def label_name(self, label: int) -> str | None:
        """The name of class ``label`` (the model's ``id2label``; a zero-shot model's candidate label), or None:
        every label text is built from it."""
        if self.zero_shot:
            return self.adapter.labels[label] if 0 <= label < self.num_labels else None
        id2label = getattr(self.model.config, "id2label", None) or {}
        name = id2label.get(label, id2label.get(str(label)))
        return None if name is None else str(name)

    def label_text(self, label: int | None) -> str:
        """Class ``label`` as people read it: ``7``, or ``281 ("tabby cat")`` (:func:`moxi_hf.labels.label_text`)."""
        return label_text(label, None if label is None else self.label_name(label))

    def label_names(self) -> list[str]:
        """The name of every class (its index where the model names none), as artifacts record them."""
        return [self.label_name(index) or str(index) for index in range(self.num_labels)]

    def preprocess(self, images: Sequence[ImageInput] | torch.Tensor) -> tuple[torch.Tensor, list]:
        """(pixel_values (B, C, H, W), RGB PIL images) for paths, PIL images or arrays; processed pixel_values
        (B, C, H, W) are checked against the (vision) model's channels and come back with no PIL images (None)."""
        if isinstance(images, torch.Tensor):
            vision = getattr(self.model.config, "vision_config", self.model.config)  # CLIP, SigLIP: the vision tower's
            return check_pixel_values(images, getattr(vision, "num_channels", None)), [None] * images.shape[0]
        images = list(images)
        if not images:
            raise MoXIError("no images to explain")
        return preprocess(self.processor, images)

    def token_forwards(self, cost: Cost | None, n_images: int = 1) -> int | None:
        """The token-forwards of ``n_images`` images costing ``cost`` each on this explainer (what the value
        function's ``on_chunk`` callback counts); None when the cost is unknown."""
        return None if cost is None else cost.token_forwards(self.adapter, self.players) * n_images

    def predict(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Predicted class (B,) on the whole images (a zero-shot model: the top candidate)."""
        return self.labelled().adapter.full_logits(pixel_values).argmax(dim=1).cpu()

    def value_function(self, pixel_values: torch.Tensor, labels: Sequence[int] | torch.Tensor,
                       on_chunk: ChunkCallback | None = None) -> ValueFunction:
        """The game v(S) of these images and labels (see :class:`moxi_hf.value.ValueFunction`)."""
        return ValueFunction(self.labelled().adapter, pixel_values, labels, self.players, self.reward,
                             self.max_batch_size, self.max_tokens, on_chunk=on_chunk)

    def game(self, image: ImageInput | torch.Tensor, label: int | None = None):
        """The game of one image as a ``shapiq.Game`` (``pip install 'moxi-hf[shapiq]'``): calling it gives
        v(S) − v(∅) for coalitions (C, P) bool, batched through :meth:`value_function`."""
        from .shapiq_game import image_game

        return image_game(self, image, label)

    def resolve_labels(self, labels: Sequence[int | str | None] | None, predicted: torch.Tensor) -> list[int]:
        """The class to explain per image: the given label (checked against the model's classes; a zero-shot
        model's candidate by text or index) or, for None (or no ``labels``), the prediction ``predicted`` (B,)."""
        if labels is None:
            labels = [None] * len(predicted)
        if len(labels) != len(predicted):
            raise MoXIError(f"got {len(labels)} labels for {len(predicted)} images")
        if self.zero_shot:
            return [int(guess) if label is None else self.adapter.text.index(label)
                    for label, guess in zip(labels, predicted.tolist())]
        return [int(guess) if label is None else check_label(label, self.num_labels)
                for label, guess in zip(labels, predicted.tolist())]

    # -- methods ----------------------------------------------------------------------------------

    def unsupported_reason(self, method: str | Method) -> str | None:
        """Why ``method`` cannot explain this model (:meth:`moxi_hf.Method.unsupported_reason`), or None."""
        cls = type(method) if isinstance(method, Method) else METHODS.get(method)
        if cls is None:
            raise MoXIError(f"unknown method {method!r}; choose among {', '.join(METHOD_NAMES)}")
        return cls.unsupported_reason(self.adapter)

    def applicable_methods(self, methods: Sequence[str] | None = None) -> list[str]:
        """``methods`` (default: every registered method, in registry order) that can explain this model."""
        return [name for name in (methods if methods is not None else METHODS) if self.unsupported_reason(name) is None]

    def _methods(self, methods: Sequence[str | Method], options: Mapping[str, Mapping] | None) -> list[Method]:
        """Method instances for names (with their ``options``) or instances; refused when one does not apply."""
        if isinstance(methods, (str, Method)) or not methods:
            raise MoXIError("methods must be a non-empty list of method names (or Method instances)")
        built = []
        for method in methods:
            if isinstance(method, str):
                method = get_method(method, **dict((options or {}).get(method, {})))
            built.append(method)
        names = [method.name for method in built]
        if len(set(names)) != len(names):
            raise MoXIError(f"a method is listed twice: {', '.join(names)}")
        for method in built:
            reason = self.unsupported_reason(method)
            if reason:
                raise MoXIError(reason)
        return built

    @staticmethod
    def _curves(curves: Sequence[str]) -> list[str]:
        if isinstance(curves, str) or not curves or len(set(curves)) != len(curves):
            raise MoXIError(f"curves must be a non-empty list of insertion and/or deletion without repeats, got {curves!r}")
        return [check_curve(curve) for curve in curves]

    @staticmethod
    def _with_interactions(method: Method, interactions: bool | Collection[str]) -> bool:
        return bool(interactions) if isinstance(interactions, bool) else method.name in interactions

    def cost(self, methods: Sequence[str | Method] = ("moxi",), curves: Sequence[str] = ("insertion",), *,
             options: Mapping[str, Mapping] | None = None, interactions: bool | Collection[str] = False,
             interaction_top: int = DEFAULT_INTERACTION_TOP) -> Cost | None:
        """The coalitions :meth:`explain_methods` evaluates per image with these arguments: each method's own
        (:meth:`moxi_hf.Method.cost`, once per curve or once when the order does not depend on it), every
        curve measured on every final order, and the interaction maps. None when a method's cost is unknown.

        :meth:`token_forwards` of it is the total that the ``on_chunk`` callback's second count reaches.
        """
        n_players = self.players.n_players
        curves = self._curves(curves)
        total = Cost()
        for method in self._methods(methods, options):
            for run in curves if method.depends_on_curve else curves[:1]:
                own = method.cost(n_players, run)
                if own is None:
                    return None
                total = total + own
            for curve in curves:
                total = total + curve_cost(n_players)
                if self._with_interactions(method, interactions):
                    total = total + interactions_cost(n_players, curve, interaction_top,
                                                      known_singles=isinstance(method, MoXI))
        return total

    # -- explaining -------------------------------------------------------------------------------

    def explain(
        self,
        image: ImageInput | torch.Tensor,
        method: str | Method = "moxi",
        curve: str = "insertion",
        label: int | str | None = None,
        interactions: bool = False,
        interaction_top: int = DEFAULT_INTERACTION_TOP,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | Sequence[str] | None = None,
        **method_options,
    ) -> Explanation:
        """Explain one image (path, PIL image, array, or processed pixel_values (C, H, W)).

        ``label``: the class (a zero-shot model's candidate by text or index; default: the prediction).
        ``interactions=True`` also fills ``explanation.interactions`` (the first ``interaction_top``
        players of the order) and, for MoXI, ``explanation.gains`` (see :mod:`moxi_hf.interactions`).
        ``candidate_labels``/``hypothesis_template``: a zero-shot model's classes for this call.
        """
        if isinstance(image, torch.Tensor) and image.ndim == 3:
            image = image.unsqueeze(0)
        return self.explain_batch([image] if not isinstance(image, torch.Tensor) else image, method, curve,
                                  None if label is None else [label], interactions=interactions,
                                  interaction_top=interaction_top, candidate_labels=candidate_labels,
                                  hypothesis_template=hypothesis_template, **method_options)[0]

    def explain_batch(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        method: str | Method = "moxi",
        curve: str = "insertion",
        labels: Sequence[int | str | None] | None = None,
        progress: bool = False,
        interactions: bool = False,
        interaction_top: int = DEFAULT_INTERACTION_TOP,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | Sequence[str] | None = None,
        **method_options,
    ) -> list[Explanation]:
        """Explain several images together (their coalitions share forward passes) with one method and curve.

        ``images``: paths / PIL images / arrays, or processed pixel_values (B, C, H, W).
        ``labels``: target class per image; None (or a None entry) = the model's prediction.
        """
        name, options = method_with_options(method, method_options)
        return self.explain_methods(images, [method], [curve], labels, options=options, interactions=interactions,
                                    interaction_top=interaction_top, progress=progress,
                                    candidate_labels=candidate_labels,
                                    hypothesis_template=hypothesis_template)[(name, curve)]

    def explain_methods(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        methods: Sequence[str | Method] = ("moxi",),
        curves: Sequence[str] = ("insertion",),
        labels: Sequence[int | str | None] | None = None,
        *,
        options: Mapping[str, Mapping] | None = None,
        interactions: bool | Collection[str] = False,
        interaction_top: int = DEFAULT_INTERACTION_TOP,
        on_chunk: ChunkCallback | None = None,
        progress: bool = False,
        candidate_labels: Sequence[str] | None = None,
        hypothesis_template: str | Sequence[str] | None = None,
    ) -> ExplanationSet:
        """Explain a batch of images with several methods on several curves: the one entry point.

        Args:
            images: paths / PIL images / arrays, or processed pixel_values (B, C, H, W).
            methods: method names (or :class:`~moxi_hf.Method` instances); each must apply to the model
                (:meth:`unsupported_reason`), else a MoXIError before any work.
            curves: ``insertion`` and/or ``deletion``.
            labels: target class per image (a zero-shot model's candidate by text or index); None (or a
                None entry) = the model's prediction.
            options: method name -> its keyword options.
            interactions: also fill ``interactions`` (the first ``interaction_top`` players of each order)
                and, for MoXI, ``gains`` (from the greedy's own values): True for every method, or a
                collection of method names.
            on_chunk: called before each forward chunk with (coalitions, token-forwards); raise to cancel
                (the exception leaves this call unchanged). :meth:`cost` gives the totals in advance.
            progress: show a progress bar over the token-forwards of the batch (:class:`moxi_hf.progress.WorkBar`).
            candidate_labels, hypothesis_template: a zero-shot model's classes for this call (those not
                given are the explainer's); their text features are computed once per label set.

        A method whose order does not depend on the curve (``depends_on_curve`` False) runs once; its
        order is measured on every curve. Every curve is measured on the final orders (k = 0..P), all
        methods of a curve in one call, so every method is measured the same way; only an incomplete
        order (MoXI stopped early) keeps the curve the method measured on its way.

        Returns:
            an :class:`~moxi_hf.ExplanationSet`: ``result[(method, curve)]`` is one Explanation per image.
        """
        if candidate_labels is not None or hypothesis_template is not None:
            return self.with_candidate_labels(candidate_labels, hypothesis_template).explain_methods(
                images, methods, curves, labels, options=options, interactions=interactions,
                interaction_top=interaction_top, on_chunk=on_chunk, progress=progress)
        curves = self._curves(curves)
        built = self._methods(methods, options)
        self.labelled()  # a zero-shot model without candidate labels is refused before any work
        if not isinstance(images, torch.Tensor):
            images = list(images)
        pixel_values, pil_images = self.preprocess(images)
        processed = isinstance(images, torch.Tensor)
        names = [None] * len(pil_images) if processed else [image_name(i) for i in images]
        views = None if processed else self.model_views(pil_images)
        predicted = self.predict(pixel_values)
        targets = self.resolve_labels(labels, predicted)
        bar = None
        if progress:  # the bar's total counts every forward pass below, the interaction maps' included
            cost = self.cost(built, curves, interactions=interactions, interaction_top=interaction_top)
            on_chunk = bar = WorkBar(self.token_forwards(cost, len(predicted)), "explain", then=on_chunk)
        game = self.value_function(pixel_values, targets, on_chunk=on_chunk)
        attributions: dict[tuple[str, str], Attribution] = {}
        explanations: dict[tuple[str, str], list[Explanation]] = {}
        try:
            for method in built:
                shared = None
                for curve in curves:
                    if method.depends_on_curve or shared is None:
                        with torch.no_grad():  # Grad-CAM enables gradients where it needs them
                            shared = method.attribute(game, curve)
                    attributions[(method.name, curve)] = shared
            measured = measure_final_orders(game, attributions, built, curves)
            for method in built:
                for curve in curves:
                    key = (method.name, curve)
                    found = explanations_of(self, game, attributions[key], measured[key], method, curve, predicted,
                                            names, pil_images, views)
                    if self._with_interactions(method, interactions):
                        attach_interactions(found, game, attributions[key], curve, interaction_top)
                    explanations[key] = found
        finally:
            if bar is not None:
                bar.close()
        return ExplanationSet([method.name for method in built], curves, targets, predicted.tolist(), explanations)

    def model_views(self, images: Sequence) -> list:
        """The pictures the model sees (PIL RGB, the processor's resize + crop), one per input image."""
        from PIL import Image

        return [Image.fromarray(model_view(image, self.processor)) for image in images]
