"""ViT-family classifiers and image-text models that can drop patch tokens (MoXI's ViT-aware removal).

Each ``MoXI…`` class is its transformers parent plus ``forward(..., embedding_mask)`` (and, for
CLIP and SigLIP, ``get_image_features(..., embedding_mask)``); parameter names are the parent's,
so ``from_pretrained`` loads a stock checkpoint and ``save_pretrained`` writes one the stock class
loads. :data:`TOKEN_CLASSES` maps a stock class name to its MoXI class: a new architecture is a
small module plus one entry there.
"""

from __future__ import annotations

from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)

from .beit import MoXIBeitForImageClassification, MoXIBeitLayer, MoXIBeitModel
from .clip import MoXICLIPForImageClassification, MoXICLIPModel, MoXICLIPVisionModel
from .data2vec import MoXIData2VecVisionForImageClassification, MoXIData2VecVisionModel
from .dinov2 import (
    MoXIDinov2ForImageClassification,
    MoXIDinov2Model,
    MoXIDinov2WithRegistersForImageClassification,
    MoXIDinov2WithRegistersModel,
)
from .image_text import TokenRemovalImageText
from .masks import (
    EmbeddingMask,
    embedding_mask_to_indices,
    mean_or_zeros,
    select_batch_removing,
)
from .mixin import TokenRemovalClassifier, TokenRemovalModel
from .siglip import MoXISiglipForImageClassification, MoXISiglipModel, MoXISiglipVisionModel
from .vit import (
    MoXIDeiTForImageClassification,
    MoXIDeiTForImageClassificationWithTeacher,
    MoXIDeiTModel,
    MoXIIJepaForImageClassification,
    MoXIIJepaModel,
    MoXIViTForImageClassification,
    MoXIViTModel,
    MoXIViTMSNForImageClassification,
    MoXIViTMSNModel,
)

__all__ = [
    "EmbeddingMask",
    "select_batch_removing",
    "embedding_mask_to_indices",
    "mean_or_zeros",
    "TokenRemovalModel",
    "TokenRemovalClassifier",
    "TokenRemovalImageText",
    "TOKEN_CLASSES",
    "TOKEN_MODEL_TYPES",
    "MoXIViTModel",
    "MoXIViTForImageClassification",
    "MoXIDeiTModel",
    "MoXIDeiTForImageClassification",
    "MoXIDeiTForImageClassificationWithTeacher",
    "MoXIViTMSNModel",
    "MoXIViTMSNForImageClassification",
    "MoXIDinov2Model",
    "MoXIDinov2ForImageClassification",
    "MoXIDinov2WithRegistersModel",
    "MoXIDinov2WithRegistersForImageClassification",
    "MoXIBeitLayer",
    "MoXIBeitModel",
    "MoXIBeitForImageClassification",
    "MoXIIJepaModel",
    "MoXIIJepaForImageClassification",
    "MoXIData2VecVisionModel",
    "MoXIData2VecVisionForImageClassification",
    "MoXICLIPVisionModel",
    "MoXICLIPModel",
    "MoXICLIPForImageClassification",
    "MoXISiglipVisionModel",
    "MoXISiglipModel",
    "MoXISiglipForImageClassification",
]

#: Stock class name -> its MoXI subclass (the one map; loading and conversion use it): classifiers, and
#: the image-text models (CLIP, SigLIP) whose image features are compared with text.
TOKEN_CLASSES: dict[str, type[TokenRemovalClassifier] | type[TokenRemovalImageText]] = {
    "ViTForImageClassification": MoXIViTForImageClassification,
    "DeiTForImageClassification": MoXIDeiTForImageClassification,
    "DeiTForImageClassificationWithTeacher": MoXIDeiTForImageClassificationWithTeacher,
    "ViTMSNForImageClassification": MoXIViTMSNForImageClassification,
    "Dinov2ForImageClassification": MoXIDinov2ForImageClassification,
    "Dinov2WithRegistersForImageClassification": MoXIDinov2WithRegistersForImageClassification,
    "BeitForImageClassification": MoXIBeitForImageClassification,
    "IJepaForImageClassification": MoXIIJepaForImageClassification,
    "Data2VecVisionForImageClassification": MoXIData2VecVisionForImageClassification,
    "CLIPForImageClassification": MoXICLIPForImageClassification,
    "SiglipForImageClassification": MoXISiglipForImageClassification,
    "CLIPModel": MoXICLIPModel,
    "SiglipModel": MoXISiglipModel,
}

#: model_type -> the MoXI class for checkpoints whose ``architectures`` names none of the above (the first
#: entry of a model type wins: for CLIP and SigLIP, the classifier).
TOKEN_MODEL_TYPES: dict[str, type[TokenRemovalClassifier] | type[TokenRemovalImageText]] = {}
for _moxi_class in TOKEN_CLASSES.values():
    TOKEN_MODEL_TYPES.setdefault(_moxi_class.config_class.model_type, _moxi_class)

# transformers renames transformers-4 checkpoint keys (``vit.encoder.layer.N...``) per backbone class
# name; our backbones load the same checkpoints, so they get their parents' renamings.
for _backbone in {moxi_class.backbone_class for moxi_class in TOKEN_CLASSES.values()}:
    _parent = next(base.__name__ for base in _backbone.__mro__[1:] if base.__module__.startswith("transformers."))
    _mapping = get_checkpoint_conversion_mapping(_parent)
    if _mapping:
        register_checkpoint_conversion_mapping(_backbone.__name__, _mapping, overwrite=True)
