"""Helpers shared by several test files (imported as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator

import torch
from transformers import ViTConfig, ViTForImageClassification
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

#: the tiny ViT-family config every test model starts from: 16×16 images, 4×4 patches (16 players), 5 labels
TINY = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=5)


def tiny_model(cls: type = ViTForImageClassification, config_cls: type = ViTConfig, seed: int = 0,
               **overrides) -> torch.nn.Module:
    """A random ``cls(config_cls(**TINY, **overrides))`` in eval mode, its weights drawn after ``manual_seed(seed)``."""
    torch.manual_seed(seed)
    return cls(config_cls(**{**TINY, **overrides})).eval()


def save_checkpoint(model: torch.nn.Module, path, image_size: int = 16) -> str:
    """``model`` and a plain resize-to-``image_size`` processor saved to ``path``; returns it as str."""
    model.save_pretrained(path)
    ViTImageProcessorPil(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return str(path)


@contextlib.contextmanager
def serve_folder(folder) -> Iterator[str]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port); yields the base URL ``http://127.0.0.1:PORT``."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: tiny image-text towers on TINY's 16×16 images: 4×4 patches, 2 layers, projection 16
TINY_VISION = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64)
TINY_TEXT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)


def char_clip_tokenizer():
    """A character-level ``CLIPTokenizer`` built offline: every byte, every byte ending a word, BOS, EOS (514)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = alphabet + [char + "</w>" for char in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])


def tiny_image_text_config(family: str, **overrides):
    """A tiny ``CLIPConfig`` or ``SiglipConfig`` whose text tower fits :func:`char_clip_tokenizer` (EOS 513)."""
    from transformers import CLIPConfig, SiglipConfig

    text = dict(TINY_TEXT, vocab_size=514, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    if family == "clip":
        return CLIPConfig(text_config=text, vision_config=dict(TINY_VISION), projection_dim=16, **overrides)
    text["projection_size"] = TINY_VISION["hidden_size"]
    return SiglipConfig(text_config=text, vision_config=dict(TINY_VISION), **overrides)


def save_image_text_checkpoint(family: str, path, seed: int = 11) -> str:
    """A tiny random ``CLIPModel`` or ``SiglipModel`` (every parameter jittered, so zero-initialised biases and
    SigLIP's logit bias matter) saved to ``path`` with :func:`char_clip_tokenizer` and a 16-px processor."""
    from transformers import CLIPModel, SiglipModel

    torch.manual_seed(seed)
    model = {"clip": CLIPModel, "siglip": SiglipModel}[family](tiny_image_text_config(family)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(path)
    char_clip_tokenizer().save_pretrained(path)
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(path)
    return str(path)
