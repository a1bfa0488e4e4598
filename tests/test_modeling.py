"""The MoXI ViT/DeiT subclasses: token removal, parity with the stock classes, embedding_mask validation."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    DeiTForImageClassification,
    DeiTForImageClassificationWithTeacher,
    ViTForImageClassification,
    ViTModel,
)

from moxi_hf.modeling import (
    MoXIDeiTForImageClassification,
    MoXIDeiTForImageClassificationWithTeacher,
    MoXIViTForImageClassification,
    MoXIViTModel,
    select_batch_removing,
)

PAIRS = [
    ("vit_dir", ViTForImageClassification, MoXIViTForImageClassification),
    ("deit_dir", DeiTForImageClassification, MoXIDeiTForImageClassification),
    ("deit_teacher_dir", DeiTForImageClassificationWithTeacher, MoXIDeiTForImageClassificationWithTeacher),
]


@pytest.mark.parametrize("fixture,stock_class,moxi_class", PAIRS)
def test_no_mask_and_all_kept_equal_parent_exactly(request, fixture, stock_class, moxi_class, pixel_values):
    path = request.getfixturevalue(fixture)
    stock = stock_class.from_pretrained(path).eval()
    ours = moxi_class.from_pretrained(path).eval()
    with torch.no_grad():
        expected = stock(pixel_values).logits
        assert torch.equal(ours(pixel_values).logits, expected)
        everything = torch.arange(16).expand(3, 16)
        assert torch.equal(ours(pixel_values, embedding_mask=everything).logits, expected)


def reference_logits(stock: ViTForImageClassification, pixel_values: torch.Tensor, keep: list[list[int]]):
    """Independent token removal: position embeddings added, rows gathered one by one, CLS prepended."""
    embeddings = stock.vit.embeddings
    patches = embeddings.patch_embeddings(pixel_values) + embeddings.position_embeddings[:, 1:]
    cls = embeddings.cls_token + embeddings.position_embeddings[:, :1]
    logits = []
    for row, kept in enumerate(keep):
        sequence = torch.cat([cls[0], patches[row, kept]]).unsqueeze(0)
        hidden = sequence
        for layer in stock.vit.layers:
            hidden = layer(hidden)
        logits.append(stock.classifier(stock.vit.layernorm(hidden)[:, 0]))
    return torch.cat(logits)


def test_subset_matches_independent_reference(vit_dir, pixel_values):
    stock = ViTForImageClassification.from_pretrained(vit_dir).eval()
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    keep = [[0, 5, 9, 15], [1, 2, 3, 4], [15, 14, 7, 0]]
    with torch.no_grad():
        got = ours(pixel_values, embedding_mask=keep).logits
        expected = reference_logits(stock, pixel_values, keep)
        # Removing tokens must change the output, or the check above proves nothing.
        assert not torch.allclose(got, stock(pixel_values).logits, atol=1e-3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_empty_coalition_runs_on_cls_token_alone(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    stock = ViTForImageClassification.from_pretrained(vit_dir).eval()
    with torch.no_grad():
        got = ours(pixel_values, embedding_mask=torch.zeros(3, 0, dtype=torch.long)).logits
        as_list = ours(pixel_values, embedding_mask=[[], [], []]).logits
        expected = reference_logits(stock, pixel_values, [[], [], []])
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, expected)
    assert torch.equal(got, as_list)
    # With no patch, every image looks the same.
    torch.testing.assert_close(got[0], got[1])


def test_bool_and_index_forms_agree(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    indices = torch.tensor([[0, 3, 8], [2, 10, 11], [1, 4, 15]])
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask.scatter_(1, indices, True)
    with torch.no_grad():
        from_indices = ours(pixel_values, embedding_mask=indices).logits
        from_mask = ours(pixel_values, embedding_mask=mask).logits
        from_lists = ours(pixel_values, embedding_mask=indices.tolist()).logits
    assert torch.equal(from_indices, from_mask)
    assert torch.equal(from_indices, from_lists)


@pytest.mark.parametrize(
    "mask,message",
    [
        (torch.tensor([[0, 16], [1, 2], [3, 4]]), "out of range"),
        (torch.tensor([[0, -1], [1, 2], [3, 4]]), "out of range"),
        (torch.tensor([[0, 0], [1, 2], [3, 4]]), "twice"),
        ([[0, 1], [2], [3, 4]], "same number"),
        (torch.tensor([[0, 1], [2, 3]]), "2 rows but the batch has 3"),
        (torch.zeros(3, 15, dtype=torch.bool), "one column per patch"),
        (torch.tensor([[True] * 16, [False] * 16, [True] * 16]), "same number"),
        (torch.tensor([[0.0, 1.0]] * 3), "integer indices or booleans"),
        (torch.zeros(3, 2, 2, dtype=torch.long), "2-D"),
        ([[0.5, 5.9]] * 3, "integer"),
        ([0, 1, 2], "2-D"),
        ([[0, "a"]] * 3, "integer"),
        ([[True, False]] * 3, "one column per patch"),
    ],
)
def test_bad_embedding_mask_raises_value_error(vit_dir, pixel_values, mask, message):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    with pytest.raises(ValueError, match=message):
        ours(pixel_values, embedding_mask=mask)


def test_select_batch_removing_is_one_gather():
    embeddings = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)
    kept = select_batch_removing(embeddings, [[4, 0], [1, 2]])
    assert torch.equal(kept[0], embeddings[0, [4, 0]])
    assert torch.equal(kept[1], embeddings[1, [1, 2]])


def test_saved_subclass_loads_in_stock_class(vit_dir, tmp_path, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    ours.save_pretrained(tmp_path)
    stock = ViTForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(stock(pixel_values).logits, ours(pixel_values).logits)


def test_interpolate_pos_encoding_still_works(vit_dir):
    stock = ViTForImageClassification.from_pretrained(vit_dir).eval()
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    bigger = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        expected = stock(bigger, interpolate_pos_encoding=True).logits
        assert torch.equal(ours(bigger, interpolate_pos_encoding=True).logits, expected)
        subset = ours(bigger, interpolate_pos_encoding=True, embedding_mask=[[0, 35], [7, 20]]).logits
    assert subset.shape == (2, 5)
    with pytest.raises(ValueError, match="doesn't match model"):
        ours(bigger)


def test_attention_mask_follows_removed_tokens(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    keep = torch.tensor([[0, 5, 9], [1, 2, 3], [4, 7, 15]])
    with torch.no_grad():
        plain = ours(pixel_values, embedding_mask=keep).logits
        ones = ours(pixel_values, embedding_mask=keep, attention_mask=torch.ones(3, 17)).logits
        full_ones = ours(pixel_values, attention_mask=torch.ones(3, 17)).logits
        full = ours(pixel_values).logits
    torch.testing.assert_close(ones, plain)
    torch.testing.assert_close(full_ones, full)


def test_bool_masked_pos_keeps_working(vit_dir, pixel_values):
    torch.manual_seed(0)
    stock = ViTModel.from_pretrained(vit_dir, use_mask_token=True, add_pooling_layer=False).eval()
    ours = MoXIViTModel.from_pretrained(vit_dir, use_mask_token=True, add_pooling_layer=False).eval()
    ours.embeddings.mask_token.data.copy_(stock.embeddings.mask_token.data + 0.5)
    stock.embeddings.mask_token.data.add_(0.5)
    masked = torch.zeros(3, 16, dtype=torch.bool)
    masked[:, :5] = True
    with torch.no_grad():
        expected = stock(pixel_values, bool_masked_pos=masked).last_hidden_state
        got = ours(pixel_values, bool_masked_pos=masked).last_hidden_state
    assert torch.equal(got, expected)


def test_output_attentions_with_eager(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        outputs = ours(pixel_values, embedding_mask=[[0, 1, 2]] * 3, output_attentions=True, output_hidden_states=True)
    assert len(outputs.attentions) == 2
    assert outputs.attentions[0].shape == (3, 2, 4, 4)
    assert len(outputs.hidden_states) == 3


def test_a_list_of_booleans_is_a_keep_mask(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    rows = [[index in (1, 5, 9) for index in range(16)] for _ in range(3)]
    with torch.no_grad():
        from_bools = ours(pixel_values, embedding_mask=rows).logits
        from_indices = ours(pixel_values, embedding_mask=[[1, 5, 9]] * 3).logits
    assert torch.equal(from_bools, from_indices)


def test_a_one_dimensional_mask_is_refused_even_for_one_image(vit_dir, pixel_values):
    ours = MoXIViTForImageClassification.from_pretrained(vit_dir).eval()
    with pytest.raises(ValueError, match=r"for a single image write \[\[\.\.\.\]\]"):
        ours(pixel_values[:1], embedding_mask=[0, 1, 2])
    with pytest.raises(ValueError, match="2-D"):
        ours(pixel_values[:1], embedding_mask=torch.tensor([0, 1, 2]))
