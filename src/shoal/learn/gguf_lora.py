"""A peft LoRA → a GGUF LoRA adapter that llama.cpp loads (``llama_adapter_lora_init``).

Tensors are ``blk.N.<attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down>.weight.lora_{a,b}``,
A as peft stores it (r, n_in) and B (n_out, r); the GGUF writer reverses the shapes into
ggml's order, which is what llama.cpp checks against the model's tensors.

The one trap (DESIGN.md §4): llama.cpp's HF converter permutes the rows of the q and k
weights (rotary layout); transformers undoes it when it loads a GGUF, so the peft adapter
lives in HF layout. B's rows for q and k get the same permutation, or the adapter silently
does something else (compare logits, not text: ``tests/learn/test_gguf_lora.py``).

Metadata: ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, plus
``shoal.base.fingerprint`` so an adapter for another base model is refused with a clear
message before llama.cpp sees it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoal.engine.lora import FINGERPRINT_KEY
from shoal.errors import BadInput

_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def permute(rows: Any, n_head: int) -> Any:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf ``LlamaModel.permute``) on a (n_out, ...) array."""
    shape = rows.shape
    return rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def export_gguf_lora(adapter_dir: Path, base_config: Any, out: Path, *, base_fingerprint: str = "") -> Path:
    """Write ``adapter_dir`` (peft ``save_pretrained``) as a GGUF LoRA at ``out`` (atomically)."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    n_head = int(base_config.num_attention_heads)
    n_kv = int(getattr(base_config, "num_key_value_heads", None) or n_head)
    tmp = out.with_suffix(".gguf.tmp")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(cfg["lora_alpha"]))
    writer.add_string(FINGERPRINT_KEY, base_fingerprint)
    writer.add_string("general.name", "shoal LoRA")
    n = 0
    for key in sorted(weights):
        if ".lora_A." not in key:
            continue
        b_key = key.replace(".lora_A.", ".lora_B.")
        # base_model.model.model.layers.{i}.{module}.lora_A.weight
        head, _, _ = key.partition(".lora_A.")
        parts = head.split(".")
        i = int(parts[parts.index("layers") + 1])
        module = ".".join(parts[parts.index("layers") + 2 :])
        if module not in _NAMES:
            raise BadInput(f"cannot export a LoRA on '{module}' to llama.cpp", hint="train on q/k/v/o or the MLP")
        a = weights[key].astype(np.float32)
        b = weights[b_key].astype(np.float32)
        if module == "self_attn.q_proj":
            b = permute(b, n_head)
        elif module == "self_attn.k_proj":
            b = permute(b, n_kv)
        name = f"blk.{i}.{_NAMES[module]}.weight"
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
        n += 1
    if n == 0:
        raise BadInput(f"{adapter_dir} holds no LoRA weights", hint="train one with `shoal learn train`")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out
