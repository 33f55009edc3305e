#!/usr/bin/env python3
"""Generate reference fixtures for r1.c with Hugging Face transformers.

For every case in CASES this script

  1. builds a tiny DeepseekV3Config and a float32 DeepseekV3ForCausalLM with a
     fixed torch seed, then re-initialises the weights so that they are not
     degenerate (normal weights, RMSNorm weights 1 + noise, a nonzero
     e_score_correction_bias in every router);
  2. writes  <out>/<case>/config.json  and  <out>/<case>/model.safetensors.
     The weights file always uses the Hugging Face hub names, one tensor per
     expert (model.layers.L.mlp.experts.E.gate_proj.weight, ...), float32 only.
     transformers 5 keeps routed experts fused in memory (gate_up_proj /
     down_proj of shape [E, ...]); we split them ourselves, compare with what
     save_pretrained() writes, and check that from_pretrained() on the written
     directory reproduces the logits exactly;
  3. writes  <out>/<case>/reference.safetensors  with
        input_ids     I32 [B, T]
        logits        F32 [B, T, V]
        loss          F32 [1]     model(input_ids, labels=input_ids).loss
        grad.<name>   F32         d loss / d parameter, hub names
        greedy_prompt I32 [6]
        greedy_ids    I32 [6+10]  generate(prompt, do_sample=False, max_new_tokens=10)
     and metadata {case, B, T, torch, transformers, ...};
  4. writes  <out>/<case>/debug.safetensors  with intermediate values that
     help when debugging the C code: the per-layer hidden states and, for
     every MoE layer, the selected experts and their weights per token.

Run it where torch + transformers are installed:
    python3 tests/make_reference.py --out tests/fixtures [--cases base,yarn]
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

B = 2                 # batch size of the reference forward/backward
PROMPT_LEN = 6        # greedy prompt length
NEW_TOKENS = 10       # greedy max_new_tokens

# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

# Same configuration as /work/shared/reference/hf-tiny (transformers 5.17).
BASE = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=64,
    moe_intermediate_size=16,
    num_hidden_layers=5,
    num_attention_heads=4,
    num_key_value_heads=4,
    n_shared_experts=1,
    n_routed_experts=8,
    routed_scaling_factor=2.5,
    kv_lora_rank=16,
    q_lora_rank=16,
    qk_rope_head_dim=4,
    v_head_dim=8,
    qk_nope_head_dim=8,
    n_group=2,
    topk_group=1,
    num_experts_per_tok=2,
    first_k_dense_replace=3,
    norm_topk_prob=True,
    hidden_act="silu",
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
    bos_token_id=0,
    eos_token_id=1,
    tie_word_embeddings=False,
    rope_interleave=True,
    attention_bias=False,
    num_nextn_predict_layers=1,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)

# Each case: config overrides, sequence length T (None = max_position_embeddings),
# seed, and for "hub_rope_scaling" a hub-layout rope_scaling block that replaces
# rope_parameters in config.json.
CASES = {
    "base": dict(cfg={}, T=None, seed=1),
    "qnull": dict(
        cfg=dict(vocab_size=96, q_lora_rank=None, num_hidden_layers=4, first_k_dense_replace=1),
        T=None, seed=2),
    # YaRN, transformers-5 layout.  A small rope_theta and a 16-dim rope part
    # make the YaRN ramp non-trivial (one frequency sits strictly inside it).
    "yarn": dict(
        cfg=dict(
            qk_rope_head_dim=16,
            max_position_embeddings=64,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 1000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 0.707,
                "mscale_all_dim": 1.0,
            }),
        T=48, seed=3),
    # YaRN again, config.json written in the hub (DeepSeek-V3 repo) layout:
    # top-level rope_theta + rope_scaling {"type": "yarn", ...}.
    "yarn_hub": dict(
        cfg=dict(qk_rope_head_dim=16, max_position_embeddings=64),
        hub_rope_theta=50.0,
        hub_rope_scaling={
            "type": "yarn",
            "factor": 2,
            "original_max_position_embeddings": 32,
            "beta_fast": 16,
            "beta_slow": 2,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        T=None, seed=4),
    # Extra: factor (4) disagrees with max_position_embeddings /
    # original_max_position_embeddings (32/16 = 2).  Shows which one wins.
    "yarn_mismatch": dict(
        cfg=dict(
            qk_rope_head_dim=16,
            max_position_embeddings=32,
            rope_parameters={
                "rope_type": "yarn",
                "rope_theta": 1000.0,
                "factor": 4.0,
                "original_max_position_embeddings": 16,
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "mscale": 0.707,
                "mscale_all_dim": 1.0,
            }),
        T=None, seed=5),
    "groups": dict(
        cfg=dict(vocab_size=128, n_routed_experts=16, num_experts_per_tok=4, n_group=4, topk_group=2,
                 n_shared_experts=2, num_hidden_layers=4, first_k_dense_replace=1),
        T=None, seed=6),
    "deep": dict(
        cfg=dict(vocab_size=80, num_hidden_layers=10, first_k_dense_replace=2, qk_rope_head_dim=8,
                 qk_nope_head_dim=8, v_head_dim=12, kv_lora_rank=12, num_attention_heads=2,
                 num_key_value_heads=2),
        T=None, seed=7),
    "nonorm": dict(
        cfg=dict(vocab_size=100, norm_topk_prob=False, routed_scaling_factor=1.7, num_hidden_layers=4,
                 first_k_dense_replace=0, n_group=1, topk_group=1),
        T=None, seed=8),
    # Extra: base config, but every e_score_correction_bias is shifted by -1,
    # so all biased scores are negative.  transformers 5.17 fills the experts
    # of non-selected groups with -inf (selection is then unchanged by a
    # uniform shift); older code that filled with 0.0 would pick experts
    # from the masked groups here.
    "negbias": dict(cfg={}, T=None, seed=9, bias_offset=-1.0),
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

def log(*a):
    print(*a, flush=True)


def make_config(case):
    kw = dict(BASE)
    kw.update(case["cfg"])
    kw["rope_parameters"] = dict(kw["rope_parameters"])
    return DeepseekV3Config(**kw)


def set_eager(config):
    """Ask for the plain PyTorch attention and expert loops (clearest reference)."""
    for attr in ("_attn_implementation", "_experts_implementation"):
        try:
            setattr(config, attr, "eager")
        except Exception as e:  # attribute may not exist in this version
            log(f"  note: cannot set {attr}: {e!r}")


def reinit_weights(model, seed, bias_offset=0.0):
    """Deterministic, non-degenerate weights.

    * RMSNorm weights: 1 + N(0, 0.1)
    * lm_head: N(0, 0.2) so the logits have a clear argmax
    * every other weight (embeddings, projections, router, experts): N(0, 0.1)
    * e_score_correction_bias (a buffer): N(0, 0.05), so that the
      selection-only bias changes which experts are picked (plus
      bias_offset, see the negbias case).
    """
    g = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name == "lm_head.weight":
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                v = 0.05 * torch.randn(b.shape, generator=g)
                v[v == 0] = 0.01  # never exactly zero
                b.copy_(v + bias_offset)


def to_hub_names(tensors, n_experts, moe_inter):
    """Map in-memory (possibly fused) tensor names to the hub per-expert names.

    transformers 5 stores routed experts as
        ...mlp.experts.gate_up_proj  [E, 2*I, H]   (rows 0..I-1 = gate, I..2I-1 = up)
        ...mlp.experts.down_proj     [E, H, I]
    The hub checkpoints store one nn.Linear weight per expert:
        ...mlp.experts.<e>.gate_proj.weight [I, H]
        ...mlp.experts.<e>.up_proj.weight   [I, H]
        ...mlp.experts.<e>.down_proj.weight [H, I]
    Unfused names are passed through unchanged.
    """
    out = {}
    for name, t in tensors.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name[: -len("gate_up_proj")]
            assert t.dim() == 3 and t.shape[0] == n_experts and t.shape[1] == 2 * moe_inter, (name, t.shape)
            for e in range(n_experts):
                out[f"{prefix}{e}.gate_proj.weight"] = t[e, :moe_inter, :].contiguous()
                out[f"{prefix}{e}.up_proj.weight"] = t[e, moe_inter:, :].contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("down_proj")]
            assert t.dim() == 3 and t.shape[0] == n_experts and t.shape[2] == moe_inter, (name, t.shape)
            for e in range(n_experts):
                out[f"{prefix}{e}.down_proj.weight"] = t[e].contiguous()
        else:
            out[name] = t.contiguous()
    return out


def read_safetensors(path):
    res = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            res[k] = f.get_tensor(k)
    return res


def load_pretrained(path):
    kwargs = dict(attn_implementation="eager", output_loading_info=True)
    for extra in (dict(dtype=torch.float32, experts_implementation="eager"),
                  dict(dtype=torch.float32),
                  dict(torch_dtype=torch.float32)):
        try:
            return DeepseekV3ForCausalLM.from_pretrained(path, **kwargs, **extra)
        except Exception as e:
            log(f"  from_pretrained{tuple(extra)} failed: {e!r}; retrying")
    raise RuntimeError("from_pretrained failed")


def router_reference(h, weight, bias, cfg):
    """Our own float64 re-implementation of the DeepSeek-V3 router
    (transformers 5.17 DeepseekV3TopkRouter.forward).

    Returns (idx, w, group_margin, expert_margin, n_zero_fill_differs): idx
    sorted ascending per row, the matching routing weights, the smallest gaps
    between the last chosen and the first rejected group / expert score (to spot
    near ties), and on how many tokens the legacy variant that fills masked
    experts with 0.0 instead of -inf would choose other experts.
    """
    E, k = cfg.n_routed_experts, cfg.num_experts_per_tok
    G, TG = cfg.n_group, cfg.topk_group
    scores = torch.sigmoid(h.double() @ weight.double().t())            # [N, E]
    choice = scores + bias.double()[None, :]
    grouped = choice.view(-1, G, E // G)
    gscore = grouped.topk(2, dim=-1).values.sum(-1)                    # [N, G]
    gs = gscore.sort(dim=-1, descending=True).values
    gmargin = (gs[:, TG - 1] - gs[:, TG]).min().item() if TG < G else float("inf")
    gidx = gscore.topk(TG, dim=-1).indices
    gmask = torch.zeros_like(gscore).scatter_(1, gidx, 1.0)
    emask = gmask[:, :, None].expand(-1, G, E // G).reshape(-1, E)
    masked = choice.masked_fill(emask == 0, float("-inf"))
    es = masked.sort(dim=-1, descending=True).values
    emargin = (es[:, k - 1] - es[:, k]).min().item() if k < E else float("inf")
    idx = masked.topk(k, dim=-1).indices
    legacy = choice.masked_fill(emask == 0, 0.0).topk(k, dim=-1).indices
    n_differs = int((idx.sort(-1).values != legacy.sort(-1).values).any(-1).sum())
    w = scores.gather(1, idx)
    if cfg.norm_topk_prob:
        w = w / (w.sum(-1, keepdim=True) + 1e-20)
    w = w * cfg.routed_scaling_factor
    order = idx.argsort(dim=-1)
    return idx.gather(1, order), w.gather(1, order), gmargin, emargin, n_differs


def collect_router_io(model, input_ids):
    """Run a no-grad forward, capturing each MoE gate's input and each
    experts module's (top_k_index, top_k_weights) arguments when available."""
    gate_in, expert_args, handles = {}, {}, []
    for li, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        if not hasattr(mlp, "gate"):
            continue

        def gate_hook(mod, args, kwargs, li=li):
            x = args[0] if args else next(iter(kwargs.values()))
            gate_in[li] = x.detach().reshape(-1, x.shape[-1]).clone()

        handles.append(mlp.gate.register_forward_pre_hook(gate_hook, with_kwargs=True))
        if hasattr(mlp.experts, "gate_up_proj"):
            def exp_hook(mod, args, kwargs, li=li):
                vals = list(args) + list(kwargs.values())
                expert_args[li] = (vals[1].detach().clone(), vals[2].detach().clone())

            handles.append(mlp.experts.register_forward_pre_hook(exp_hook, with_kwargs=True))
    with torch.no_grad():
        out = model(input_ids, output_hidden_states=True)
    for h in handles:
        h.remove()
    return out, gate_in, expert_args


def greedy_by_hand(model, prompt, n):
    """Plain argmax decoding with full recomputation (no KV cache)."""
    ids = prompt.clone()
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids, use_cache=False).logits[:, -1, :].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
    return ids


def hub_layout_config(path, case):
    """Rewrite config.json in the DeepSeek-V3 hub layout (rope_theta +
    rope_scaling {"type": "yarn", ...}, no rope_parameters, no derived keys)."""
    with open(path) as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters", None)
    for k in ("head_dim", "qk_head_dim", "rope_interleave"):
        cfg.pop(k, None)
    cfg["rope_theta"] = case["hub_rope_theta"]
    cfg["rope_scaling"] = dict(case["hub_rope_scaling"])
    # a few fields the real hub config carries and transformers ignores
    cfg["architectures"] = ["DeepseekV3ForCausalLM"]
    cfg["topk_method"] = "noaux_tc"
    cfg["scoring_func"] = "sigmoid"
    cfg["moe_layer_freq"] = 1
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


# ---------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------

def run_case(name, case, outdir):
    log(f"\n===== case {name} =====")
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    seed = case["seed"]

    # -- config ------------------------------------------------------------
    config = make_config(case)
    if "hub_rope_scaling" in case:
        # Write the v5 config, rewrite it in hub layout, and load it back so the
        # model below is built from exactly what transformers reads from it.
        config.save_pretrained(d)
        hub_layout_config(os.path.join(d, "config.json"), case)
        config = DeepseekV3Config.from_pretrained(d)
        log("  hub-layout config.json loaded; rope_parameters =", config.rope_parameters)
        log("  rope_scaling attribute:", getattr(config, "rope_scaling", "<absent>"))
    set_eager(config)
    log("  rope_parameters:", config.rope_parameters)

    # -- model -------------------------------------------------------------
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config).to(torch.float32)
    reinit_weights(model, seed, case.get("bias_offset", 0.0))
    model.eval()
    log("  attn impl:", model.config._attn_implementation,
        " experts impl:", getattr(model.config, "_experts_implementation", "<n/a>"))

    rot = model.model.rotary_emb
    attn0 = model.model.layers[0].self_attn
    inv_freq = [float(x) for x in rot.inv_freq]
    log("  rotary rope_type:", getattr(rot, "rope_type", "?"), " attention_scaling:", rot.attention_scaling)
    log("  inv_freq:", inv_freq)
    log("  self_attn.scaling:", attn0.scaling, " qk_head_dim**-0.5:", config.qk_head_dim ** -0.5)

    E, I = config.n_routed_experts, config.moe_intermediate_size
    V = config.vocab_size
    T = case["T"] or config.max_position_embeddings

    # -- weights file ------------------------------------------------------
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    log("  in-memory state_dict keys (sample):",
        [k for k in state if ".mlp.experts" in k][:3])
    hub_state = to_hub_names(state, E, I)
    assert all(t.dtype == torch.float32 for t in hub_state.values())

    # What does save_pretrained itself write?  (for the report)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        files = sorted(os.listdir(tmp))
        log("  save_pretrained wrote:", files)
        st_path = os.path.join(tmp, "model.safetensors")
        if os.path.exists(st_path):
            sp = read_safetensors(st_path)
            same_keys = set(sp) == set(hub_state)
            same_vals = same_keys and all(torch.equal(sp[k], hub_state[k]) for k in sp)
            dtypes = sorted({str(t.dtype) for t in sp.values()})
            log(f"  save_pretrained keys == hub per-expert keys: {same_keys}; values equal: {same_vals}; dtypes {dtypes}")
            if not same_keys:
                log("    only in save_pretrained:", sorted(set(sp) - set(hub_state))[:6])
                log("    only in ours:", sorted(set(hub_state) - set(sp))[:6])
        if "hub_rope_scaling" not in case:
            shutil.copy(os.path.join(tmp, "config.json"), os.path.join(d, "config.json"))
    # We always write the weights ourselves (hub names, f32, sorted keys).
    save_file({k: hub_state[k] for k in sorted(hub_state)}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})

    # -- inputs ------------------------------------------------------------
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, V, (B, T), generator=g)

    # -- forward with hooks (logits, hidden states, routing) ----------------
    out, gate_in, expert_args = collect_router_io(model, input_ids)
    logits_nograd = out.logits
    debug = {}
    hs = torch.stack(list(out.hidden_states), 0) if out.hidden_states is not None else None
    if hs is not None:
        debug["hidden_states"] = hs.contiguous()
        with torch.no_grad():
            final = model.model(input_ids).last_hidden_state
            emb = model.model.embed_tokens(input_ids)
        log("  hidden_states:", tuple(hs.shape), " [0]==embeddings:", torch.equal(hs[0], emb),
            " [-1]==final normed state:", torch.equal(hs[-1], final))

    worst_g, worst_e, router_ok, zero_fill_differs = float("inf"), float("inf"), True, 0
    for li, h in sorted(gate_in.items()):
        gate = model.model.layers[li].mlp.gate
        idx, w, gm, em, nd = router_reference(h, gate.weight, gate.e_score_correction_bias, config)
        worst_g, worst_e = min(worst_g, gm), min(worst_e, em)
        zero_fill_differs += nd
        debug[f"router.{li}.topk_idx"] = idx.to(torch.int32).contiguous()
        debug[f"router.{li}.topk_w"] = w.to(torch.float32).contiguous()
        if li in expert_args:
            hidx, hw = expert_args[li]
            o = hidx.argsort(dim=-1)
            hidx, hw = hidx.gather(1, o), hw.gather(1, o)
            same_idx = torch.equal(hidx.long(), idx.long())
            wdiff = (hw.double() - w).abs().max().item() if same_idx else float("nan")
            router_ok &= same_idx and wdiff < 1e-5
            log(f"  layer {li}: HF experts got idx == our float64 router: {same_idx}; max |w diff| {wdiff:.3g}; "
                f"hf weights dtype {hw.dtype}")
    log(f"  router margins: min group gap {worst_g:.4g}, min expert gap {worst_e:.4g}; router formula ok: {router_ok}; "
        f"tokens where a 0.0 mask fill would differ: {zero_fill_differs}")

    # -- loss and gradients ------------------------------------------------
    model.zero_grad(set_to_none=True)
    res = model(input_ids, labels=input_ids)
    res.loss.backward()
    logits = res.logits.detach()
    log(f"  loss {res.loss.item():.6f}; logits(train fwd) vs no-grad fwd max diff "
        f"{(logits - logits_nograd).abs().max().item():.3g}")

    # manual check of the loss definition: mean CE of logits[:, :-1] vs ids[:, 1:]
    man = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V).double(),
                                            input_ids[:, 1:].reshape(-1))
    log(f"  manual shifted-mean CE {man.item():.6f}")

    grads, no_grad = {}, []
    for n, p in model.named_parameters():
        if p.grad is None:
            no_grad.append(n)
        else:
            grads[n] = p.grad.detach().clone()
    buffers = [n for n, _ in model.named_buffers()]
    log("  params without grad:", no_grad)
    log("  buffers:", buffers)
    hub_grads = to_hub_names(grads, E, I)

    # -- greedy generation -------------------------------------------------
    greedy = None
    for attempt in range(50):
        gp = torch.Generator().manual_seed(10_000 * seed + attempt)
        prompt = torch.randint(2, V, (1, PROMPT_LEN), generator=gp)  # avoid bos/eos in the prompt
        with torch.no_grad():
            gen = model.generate(prompt, do_sample=False, max_new_tokens=NEW_TOKENS,
                                 pad_token_id=config.eos_token_id)
        if gen.shape[1] == PROMPT_LEN + NEW_TOKENS:
            greedy = (prompt, gen)
            break
        log(f"  generate stopped early (eos) on attempt {attempt}: {gen.tolist()}")
    assert greedy is not None, "no prompt without early eos"
    prompt, gen = greedy
    by_hand = greedy_by_hand(model, prompt, NEW_TOKENS)
    log("  greedy:", gen[0].tolist(), " == plain argmax loop:", torch.equal(gen, by_hand))

    # -- reference file ----------------------------------------------------
    ref = {
        "input_ids": input_ids.to(torch.int32),
        "logits": logits.to(torch.float32),
        "loss": res.loss.detach().reshape(1).to(torch.float32),
        "greedy_prompt": prompt[0].to(torch.int32),
        "greedy_ids": gen[0].to(torch.int32),
    }
    for n, t in hub_grads.items():
        ref["grad." + n] = t.to(torch.float32)
    meta = {
        "case": name,
        "B": str(B),
        "T": str(T),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "attn_implementation": str(model.config._attn_implementation),
        "rope_parameters": json.dumps(config.rope_parameters, sort_keys=True),
        "rope_attention_scaling": repr(float(rot.attention_scaling)),
        "rope_inv_freq": json.dumps(inv_freq),
        "softmax_scale": repr(float(attn0.scaling)),
        "greedy_matches_argmax_loop": str(torch.equal(gen, by_hand)),
    }
    save_file({k: v.contiguous() for k, v in sorted(ref.items())}, os.path.join(d, "reference.safetensors"),
              metadata=meta)
    debug_meta = {"case": name,
                  "note": "hidden_states = output_hidden_states stacked [L+1,B,T,H] (see generator log for "
                          "what [0] and [-1] are); router.L.topk_idx: experts chosen per token (row = b*T+t), "
                          "sorted ascending, topk_w the matching weights incl. routed_scaling_factor "
                          "(from the generator's float64 router, checked equal to what HF's experts received)"}
    save_file({k: v.contiguous() for k, v in sorted(debug.items())}, os.path.join(d, "debug.safetensors"),
              metadata=debug_meta)

    # -- round trip through from_pretrained ---------------------------------
    m2, info = load_pretrained(d)
    m2.eval()
    log("  from_pretrained loading info:", {k: v for k, v in info.items() if v})
    log("  reloaded rope_parameters:", m2.config.rope_parameters,
        " attention_scaling:", m2.model.rotary_emb.attention_scaling,
        " softmax scale:", m2.model.layers[0].self_attn.scaling)
    with torch.no_grad():
        l2 = m2(input_ids).logits
        b_ok = all(torch.equal(a.mlp.gate.e_score_correction_bias, b.mlp.gate.e_score_correction_bias)
                   for a, b in zip(model.model.layers, m2.model.layers) if hasattr(a.mlp, "gate"))
    diff = (l2 - logits).abs().max().item()
    log(f"  round trip: max |logits diff| {diff:.3g}; bias buffers equal: {b_ok}")
    sizes = {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}
    log("  files:", sizes)
    return dict(round_trip_diff=diff, router_ok=router_ok, greedy_ok=torch.equal(gen, by_hand),
                min_group_gap=worst_g, min_expert_gap=worst_e, zero_fill_differs=zero_fill_differs, sizes=sizes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args()
    torch.set_num_threads(1)  # deterministic CPU reductions
    log("torch", torch.__version__, "transformers", transformers.__version__)
    summary = {}
    for name in args.cases.split(","):
        try:
            summary[name] = run_case(name, CASES[name], args.out)
        except Exception as e:  # keep going so one bad case does not lose the rest
            import traceback
            traceback.print_exc()
            summary[name] = f"FAILED: {e!r}"
    log("\n===== summary =====")
    for k, v in summary.items():
        log(k, v)
    return 0 if all(isinstance(v, dict) for v in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
