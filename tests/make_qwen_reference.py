#!/usr/bin/env python3
"""Reference fixtures for r1.c's second architecture family (gqa.c): Qwen2 and Llama.

For each case in CASES this script builds a tiny Qwen2ForCausalLM or LlamaForCausalLM in
transformers with a fixed seed, gives it non-degenerate weights (RMSNorm weights 1 + noise,
nonzero q/k/v biases for Qwen2), and writes into <out>/<case>/

  config.json        as save_pretrained writes it (model_type "qwen2" / "llama")
  model.safetensors  float32, the hub names (model.layers.N.self_attn.q_proj.weight, ...)
  reference.safetensors
      input_ids      I32 [B, T]
      logits         F32 [B, T, V]
      loss           F32 [1]         model(input_ids, labels=input_ids).loss
      grad.<name>    F32             d loss / d parameter, for every parameter
      greedy_prompt  I32 [6]
      greedy_ids     I32 [6+10]      generate(prompt, do_sample=False, max_new_tokens=10)
      hidden_states  F32 [L+1, B, T, D]  (for debugging the C side)

and checks that from_pretrained on the written directory gives the same logits.

With --check DIR ... it also (with --cases "", only) loads each directory written by ./r1
(config.json and model.safetensors, with r1_logits.safetensors from `./r1 forward` on the
input_ids of r1_input.safetensors) in transformers and compares the logits.

    python3 tests/make_qwen_reference.py --out tests/fixtures
    python3 tests/make_qwen_reference.py --cases "" --check tests/fixtures/r1_saved_qwen2 \
        tests/fixtures/r1_saved_llama
"""

import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM)

B = 2
PROMPT_LEN = 6
NEW_TOKENS = 10

COMMON = dict(vocab_size=64, hidden_size=32, intermediate_size=64, max_position_embeddings=64,
              rms_norm_eps=1e-6, hidden_act="silu", tie_word_embeddings=False,
              bos_token_id=0, eos_token_id=1, initializer_range=0.02)

CASES = {
    # Qwen2: q/k/v biases, 4 query heads sharing 2 kv heads, head_dim = hidden / heads = 8
    "qwen2-tiny": dict(arch="qwen2", T=24, seed=21,
                       cfg=dict(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    # Llama: no biases, multi-query (1 kv head), head_dim 12 != hidden / heads
    "llama-tiny": dict(arch="llama", T=20, seed=22,
                       cfg=dict(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=1,
                                head_dim=12, attention_bias=False, mlp_bias=False,
                                rope_parameters={"rope_type": "default", "rope_theta": 500.0})),
}


def log(*a):
    print(*a, flush=True)


def make_model(case):
    kw = dict(COMMON)
    kw.update(case["cfg"])
    cls_cfg, cls = (Qwen2Config, Qwen2ForCausalLM) if case["arch"] == "qwen2" else \
        (LlamaConfig, LlamaForCausalLM)
    config = cls_cfg(**kw)
    for k in ("bos_token_id", "eos_token_id", "tie_word_embeddings"):
        setattr(config, k, kw[k])
    config._attn_implementation = "eager"
    torch.manual_seed(case["seed"])
    model = cls(config).to(torch.float32)
    g = torch.Generator().manual_seed(1000 + case["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:  # embeddings, projections and their biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return config, model.eval()


def run_case(name, case, outdir):
    log(f"\n===== case {name} =====")
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    config, model = make_model(case)
    V, T = config.vocab_size, case["T"]
    model.save_pretrained(d)
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file({k: state[k] for k in sorted(state)}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})
    log("  config.json:", open(os.path.join(d, "config.json")).read())
    log("  tensors:", sorted(state)[:12], "...", len(state))
    attn0 = model.model.layers[0].self_attn
    log("  softmax scale:", attn0.scaling, " inv_freq:", model.model.rotary_emb.inv_freq.tolist())

    g = torch.Generator().manual_seed(case["seed"])
    input_ids = torch.randint(0, V, (B, T), generator=g)
    model.zero_grad(set_to_none=True)
    res = model(input_ids, labels=input_ids, output_hidden_states=True)
    res.loss.backward()
    logits = res.logits.detach()
    hidden = torch.stack([h.detach() for h in res.hidden_states], 0)
    log(f"  loss {res.loss.item():.6f}")
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing

    greedy = None
    for attempt in range(50):
        gp = torch.Generator().manual_seed(10_000 * case["seed"] + attempt)
        prompt = torch.randint(2, V, (1, PROMPT_LEN), generator=gp)
        with torch.no_grad():
            gen = model.generate(prompt, do_sample=False, max_new_tokens=NEW_TOKENS,
                                 eos_token_id=config.eos_token_id, pad_token_id=config.eos_token_id)
        if gen.shape[1] == PROMPT_LEN + NEW_TOKENS:
            greedy = (prompt, gen)
            break
    assert greedy is not None
    prompt, gen = greedy
    ids = prompt.clone()
    with torch.no_grad():  # the same by a plain argmax loop without a cache
        for _ in range(NEW_TOKENS):
            nxt = model(ids, use_cache=False).logits[:, -1, :].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], 1)
    log("  greedy:", gen[0].tolist(), " == argmax loop:", torch.equal(ids, gen))

    ref = {"input_ids": input_ids.to(torch.int32), "logits": logits.float(),
           "loss": res.loss.detach().reshape(1).float(), "greedy_prompt": prompt[0].to(torch.int32),
           "greedy_ids": gen[0].to(torch.int32), "hidden_states": hidden.float()}
    for n, t in grads.items():
        ref["grad." + n] = t.float()
    meta = {"case": name, "torch": torch.__version__, "transformers": transformers.__version__,
            "architectures": json.dumps(config.architectures)}
    save_file({k: v.contiguous() for k, v in sorted(ref.items())},
              os.path.join(d, "reference.safetensors"), metadata=meta)

    m2 = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                              attn_implementation="eager").eval()
    with torch.no_grad():
        diff = (m2(input_ids).logits - logits).abs().max().item()
    log(f"  from_pretrained round trip ({type(m2).__name__}): max |logits diff| {diff:.3g}")
    log("  files:", {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))})
    return diff


def check_r1(d):
    ids = load_file(os.path.join(d, "r1_input.safetensors"))["input_ids"].long()
    ours = load_file(os.path.join(d, "r1_logits.safetensors"))["logits"]
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(ids).logits
    rel = ((logits - ours).norm() / ours.norm()).item()
    log(f"{os.path.basename(d)}: {type(model).__name__} vs r1 logits: relative L2 {rel:.2e}")
    return rel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "fixtures"))
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--check", nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    log("torch", torch.__version__, "transformers", transformers.__version__)
    ok = True
    for name in filter(None, args.cases.split(",")):
        try:
            ok &= run_case(name, CASES[name], args.out) < 1e-5
        except Exception:  # keep going: one failed case must not lose the other
            import traceback
            traceback.print_exc()
            ok = False
    for d in args.check:
        try:
            ok &= check_r1(d) < 1e-4
        except Exception:
            import traceback
            traceback.print_exc()
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
