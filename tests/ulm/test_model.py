from __future__ import annotations

import pytest
import torch

from shoal.ulm.model import ULM, ModelConfig, apply_rope, rope_tables


def small() -> ModelConfig:
    return ModelConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)


def test_forward_gives_logits_of_batch_time_vocab_and_a_loss() -> None:
    m = ULM(small())
    idx = torch.randint(0, 50, (3, 10))
    logits, loss = m(idx, idx)
    assert logits.shape == (3, 10, 50)
    assert loss is not None and loss.shape == ()


def test_embeddings_are_tied_to_the_output_matrix() -> None:
    m = ULM(small())
    names = [n for n, _ in m.named_parameters()]
    assert "embed.weight" in names and not any("lm_head" in n or "output" in n for n in names)


def test_the_model_is_causal_a_later_token_never_changes_earlier_logits() -> None:
    m = ULM(small()).eval()
    a = torch.randint(0, 50, (1, 8))
    b = a.clone()
    b[0, -1] = (b[0, -1] + 1) % 50
    assert torch.allclose(m(a)[0][0, :-1], m(b)[0][0, :-1], atol=1e-6)


def test_rope_preserves_norms_and_position_zero_is_identity() -> None:
    cos, sin = rope_tables(8, 5, 10000.0)
    x = torch.randn(1, 2, 5, 8)
    y = apply_rope(x, cos, sin)
    assert torch.allclose(x.norm(dim=-1), y.norm(dim=-1), atol=1e-5)
    assert torch.allclose(x[:, :, 0], y[:, :, 0])


def test_it_overfits_one_batch() -> None:
    torch.manual_seed(0)
    m = ULM(small())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    x = torch.randint(0, 50, (4, 16))
    y = torch.roll(x, -1, 1)
    first = None
    for _ in range(150):
        _, loss = m(x, y)
        assert loss is not None
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 < first


def test_generate_is_greedy_at_temperature_zero_and_stops() -> None:
    m = ULM(small()).eval()
    idx = torch.tensor([[1, 2, 3]])
    a = m.generate(idx, 5)
    assert a.shape == (1, 8) and torch.equal(a, m.generate(idx, 5))


def test_bad_shapes_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="multiple of n_head"):
        ModelConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="unknown model keys"):
        ModelConfig.from_dict({"n_layers": 2})
    with pytest.raises(ValueError, match="block_size"):
        ULM(small())(torch.zeros(1, 17, dtype=torch.long))
