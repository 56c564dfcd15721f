"""bf16 frozen base weights (model/precision.py: store_frozen, FrozenLinear): LoRA's frozen Linear weights stored
in bf16 once, adapters and their optimizer state fp32, the same bf16 autocast forward and gradients as before
without a per-forward weight cast, fp32 callers still served, and full fine-tuning untouched. Tiny models: bf16 is
emulated on CPUs without native support, so these stay small."""
from __future__ import annotations

import peft
import torch

from helpers import tiny_llama
from shipsft.config import RunConfig
from shipsft.data.pack import collate, pack_examples
from shipsft.data.types import Rendered
from shipsft.model.load import apply_method
from shipsft.model.precision import FrozenLinear, store_frozen
from shipsft.train.loss import batch_ce_sum

BF16 = torch.bfloat16


def _lora(seed=0):
    cfg = RunConfig.model_validate({"method": {"lora": {"r": 4, "alpha": 8}}})
    model = apply_method(cfg.method, tiny_llama(vocab_size=96, seed=seed), False)  # head shape != any projection
    with torch.no_grad():  # a non-zero adapter, so its gradients and outputs are not trivially equal
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    return model.train()


def _batch():
    g = torch.Generator().manual_seed(0)
    rs = [Rendered(f"p.jsonl:{i}", torch.randint(3, 90, (n,), generator=g).tolist(), [k >= 2 for k in range(n)])
          for i, n in enumerate([9, 6, 12, 5])]
    return collate(pack_examples(rs, 16, True).rows, pad_id=0)


def test_frozen_linears_become_bf16_and_everything_trained_stays_fp32():
    model = _lora()
    assert store_frozen(model, BF16) == 2 * 7  # 7 adapted projections x 2 layers
    frozen = [m for m in model.modules() if isinstance(m, FrozenLinear)]
    assert len(frozen) == 14 and all(m.weight.dtype == BF16 and not m.weight.requires_grad for m in frozen)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trained and all(p.dtype == torch.float32 and "lora_" in n for n, p in trained)
    base = model.get_base_model()
    assert base.lm_head.weight.dtype == torch.float32 and base.model.embed_tokens.weight.dtype == torch.float32
    assert base.model.norm.weight.dtype == torch.float32
    opt = torch.optim.AdamW([p for _, p in trained], lr=1e-3)
    with torch.autocast("cpu", dtype=BF16):
        batch_ce_sum(model, _batch()).backward()
    opt.step()
    assert all(s["exp_avg"].dtype == torch.float32 for s in opt.state.values())


def test_same_autocast_loss_and_adapter_gradients_as_fp32_weights():
    """autocast used to cast each fp32 base weight to bf16 every forward; storing that bf16 value once gives the
    same numbers (the same rounding), so the loss and the adapter gradients match."""
    ref, ours = _lora(), _lora()
    store_frozen(ours, BF16)
    batch = _batch()
    grads = []
    for m in (ref, ours):
        with torch.autocast("cpu", dtype=BF16):
            loss = batch_ce_sum(m, batch)
        loss.backward()
        grads.append((float(loss.detach()), [p.grad for p in m.parameters() if p.requires_grad]))
    assert grads[1][0] == grads[0][0]
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_no_per_forward_cast_of_the_frozen_weights():
    from torch.profiler import profile

    def weight_casts(model):
        shapes = {tuple(m.weight.shape) for n, m in model.named_modules() if n.endswith("base_layer")}
        with profile(record_shapes=True) as prof, torch.autocast("cpu", dtype=BF16), torch.no_grad():
            batch_ce_sum(model, _batch())
        return sum(1 for e in prof.events() if e.name == "aten::_to_copy" and e.input_shapes
                   and tuple(e.input_shapes[0]) in shapes)

    ref, ours = _lora(), _lora()
    store_frozen(ours, BF16)
    assert weight_casts(ref) >= 14  # every frozen projection, every forward
    assert weight_casts(ours) == 0


def test_fp32_callers_without_autocast_get_fp32_and_the_adapter_switches_off():
    """Eval loss and KL to the base run without autocast: FrozenLinear computes in bf16 and returns fp32."""
    model = _lora().eval()
    store_frozen(model, BF16)
    ids = torch.tensor([[5, 9, 11, 40, 7, 8]])
    with torch.no_grad():
        tuned = model(input_ids=ids, use_cache=False).logits
        with model.disable_adapter():
            base = model(input_ids=ids, use_cache=False).logits
    assert tuned.dtype == base.dtype == torch.float32 and torch.isfinite(tuned).all()
    assert not torch.equal(tuned, base)
    lin = FrozenLinear(4, 3, device="meta")
    lin.weight = torch.nn.Parameter(torch.eye(3, 4, dtype=BF16), requires_grad=False)
    lin.bias = torch.nn.Parameter(torch.zeros(3, dtype=BF16), requires_grad=False)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert lin(x).dtype == torch.float32 and lin(x).tolist() == [[1.0, 2.0, 3.0]]


def test_load_for_training_stores_bf16_only_for_adapters_under_bf16(monkeypatch, tmp_path):
    """load_for_training: lora + bf16 -> frozen base in bf16; full + bf16 -> fp32 masters; lora + fp32 -> fp32."""
    from shipsft.model import load

    monkeypatch.setattr(load, "load_base", lambda model, method, device: (tiny_llama(vocab_size=96), tmp_path))
    for name, amp, expect_frozen in (("lora", BF16, 14), ("full", BF16, 0), ("lora", None, 0)):
        cfg = RunConfig.model_validate({"method": {"name": name}})
        model, _ = load.load_for_training(cfg.model, cfg.method, False, torch.device("cpu"), amp)
        assert sum(isinstance(m, FrozenLinear) for m in model.modules()) == expect_frozen
        if name == "full":
            assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())


def test_qlora_style_quantized_subclasses_are_left_alone():
    class Quantized(torch.nn.Linear):
        pass

    model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    layer = model.get_base_model().model.layers[0].self_attn
    layer.k_proj = Quantized(64, 32).requires_grad_(False)
    store_frozen(model, BF16)
    assert type(layer.k_proj) is Quantized and layer.k_proj.weight.dtype == torch.float32
