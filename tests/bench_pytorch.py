#!/usr/bin/env python3
"""The baseline for r1's speed claim: the same DeepSeek-V3 decoder written plainly in PyTorch.

Eager PyTorch, float32, modelled on transformers' DeepseekV3 (modeling_deepseek_v3.py): MLA
attention (q_a_proj -> q_a_layernorm -> q_b_proj; kv_a_proj_with_mqa split into the latent c_kv
and one shared rope key; kv_a_layernorm; kv_b_proj), interleaved RoPE, causal softmax attention,
SwiGLU MLPs, and MoE with a sigmoid router whose e_score_correction_bias only picks experts,
group-limited top-k, normalised and scaled weights, shared experts, and routed experts computed
the usual eager way (loop over experts, index_select their tokens, index_add the results back).
The sizes are r1.c's presets (PRESETS in formats.c). One training step is what `./r1 bench` times:
forward + cross-entropy, backward, global-norm clipping at 1.0, AdamW(lr 1e-3, betas (0.9, 0.95),
weight decay 0.1 on matrices), and the auxiliary-loss-free bias update (gamma 1e-3).

    /usr/bin/python3 tests/bench_pytorch.py --preset small --threads 2 [--steps 5] [--attn both]
    /usr/bin/python3 tests/bench_pytorch.py --threads 1 --profile      # top ops of one step

Runs on torch 1.13 (Debian's python3-torch) and newer; --attn sdpa needs torch >= 2.0.
See tests/BENCH.md.
"""
import argparse
import math
import os
import sys
import time

def read_presets():
    """The preset tables of formats.c (section 2), parsed from the source so the two never drift:
    {"name", "what", {.field = value, ...}} entries of PRESETS."""
    import re
    src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "formats.c")).read()
    table = src[src.index("static const Preset PRESETS[] = {"):]
    table = table[:table.index("};")]
    presets = {}
    for name, body in re.findall(r'\{"([\w-]+)",\s*"[^"]*",\s*\{(.*?)\}\}', table, re.S):
        fields = {}
        for key, value in re.findall(r"\.(\w+)\s*=\s*([-\d.e]+)f?", body):
            fields[key] = float(value) if any(ch in value for ch in ".e") else int(value)
        fields.setdefault("rope_theta", 10000.0)
        fields["norm_topk_prob"] = bool(fields.get("norm_topk_prob", 0))
        presets[name] = fields
    return presets


PRESETS = read_presets()


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed steps after 1 warm-up")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--attn", default="plain", choices=["plain", "sdpa", "both"],
                    help="plain: matmul, mask, softmax, matmul; sdpa: F.scaled_dot_product_attention")
    ap.add_argument("--init-std", type=float, default=0.006,
                    help="normal init std (default 0.006, DeepSeek-V3's initializer_range)")
    ap.add_argument("--profile", action="store_true",
                    help="after timing, profile one train step with torch.profiler: top ops")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--openblas-core", default="detect",
                    help="OpenBLAS kernels: 'detect' (default) lets OpenBLAS choose for this CPU, "
                         "ignoring an inherited OPENBLAS_CORETYPE; or a name such as Haswell "
                         "(AVX2) or SkylakeX (AVX-512), passed as OPENBLAS_CORETYPE")
    return ap.parse_args()


args = parse_args()
# before torch loads, so that OpenMP (and an OpenMP OpenBLAS) start with this many threads
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))


# OpenBLAS picks its kernels for the CPU it runs on unless OPENBLAS_CORETYPE names them. Some
# environments set that variable (this project's sandbox sets OPENBLAS_CORETYPE=Haswell, the
# AVX2 kernels, on a CPU with AVX-512, where OpenBLAS itself would choose its Cooperlake AVX-512
# kernels), which would make the baseline slower than OpenBLAS makes it for this CPU. So by
# default the variable is dropped; --openblas-core NAME forces a choice (on the project's Zen 5
# sandbox, SkylakeX was faster still: tests/BENCH.md has the figures with each choice).
if args.openblas_core == "detect":
    os.environ.pop("OPENBLAS_CORETYPE", None)
else:
    os.environ["OPENBLAS_CORETYPE"] = args.openblas_core

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Config:
    def __init__(self, d):
        self.__dict__.update(d)


class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rope_interleave(x, cos, sin):
    # transformers' apply_rotary_pos_emb_interleave: pairs (x[2i], x[2i+1]) -> [evens | odds],
    # then the usual rotate_half rotation. x: (B, H, T, dr); cos, sin: (T, dr)
    b, h, t, d = x.shape
    x = x.view(b, h, t, d // 2, 2).transpose(4, 3).reshape(b, h, t, d)
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.c, self.attn = c, attn
        H = c.num_attention_heads
        self.qk_head_dim = c.qk_nope_head_dim + c.qk_rope_head_dim
        self.q_a_proj = nn.Linear(c.hidden_size, c.q_lora_rank, bias=False)
        self.q_a_layernorm = RMSNorm(c.q_lora_rank, c.rms_norm_eps)
        self.q_b_proj = nn.Linear(c.q_lora_rank, H * self.qk_head_dim, bias=False)
        self.kv_a_proj_with_mqa = nn.Linear(c.hidden_size, c.kv_lora_rank + c.qk_rope_head_dim,
                                            bias=False)
        self.kv_a_layernorm = RMSNorm(c.kv_lora_rank, c.rms_norm_eps)
        self.kv_b_proj = nn.Linear(c.kv_lora_rank, H * (c.qk_nope_head_dim + c.v_head_dim),
                                   bias=False)
        self.o_proj = nn.Linear(H * c.v_head_dim, c.hidden_size, bias=False)
        self.scaling = self.qk_head_dim ** -0.5

    def forward(self, x, cos, sin, mask):
        c = self.c
        B, T, _ = x.shape
        H, dn, dr, dv = c.num_attention_heads, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        q = q.view(B, T, H, self.qk_head_dim).transpose(1, 2)
        q_nope, q_pe = torch.split(q, [dn, dr], dim=-1)
        ckv = self.kv_a_proj_with_mqa(x)
        c_kv, k_pe = torch.split(ckv, [c.kv_lora_rank, dr], dim=-1)
        k_pe = k_pe.view(B, 1, T, dr)
        kv = self.kv_b_proj(self.kv_a_layernorm(c_kv)).view(B, T, H, dn + dv).transpose(1, 2)
        k_nope, v = torch.split(kv, [dn, dv], dim=-1)
        q_pe = apply_rope_interleave(q_pe, cos, sin)
        k_pe = apply_rope_interleave(k_pe, cos, sin).expand(B, H, T, dr)
        q = torch.cat((q_nope, q_pe), dim=-1)
        k = torch.cat((k_nope, k_pe), dim=-1)
        if self.attn == "sdpa":
            # its default scale is 1/sqrt(q.size(-1)) = self.scaling (no YaRN mscale here)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = torch.matmul(q, k.transpose(2, 3)) * self.scaling
            s = s.masked_fill(mask, float("-inf"))
            p = F.softmax(s, dim=-1)
            o = torch.matmul(p, v)
        o = o.transpose(1, 2).reshape(B, T, H * dv)
        return self.o_proj(o)


class MLP(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    """transformers' DeepseekV3TopkRouter: sigmoid scores; the correction bias only selects."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(c.n_routed_experts, c.hidden_size))
        self.register_buffer("e_score_correction_bias", torch.zeros(c.n_routed_experts))

    def forward(self, x):  # x: (N, D)
        c = self.c
        E, G = c.n_routed_experts, c.n_group
        scores = F.linear(x, self.weight).sigmoid()
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias
            group_scores = choice.view(-1, G, E // G).topk(2, dim=-1)[0].sum(dim=-1)
            group_idx = torch.topk(group_scores, k=c.topk_group, dim=-1, sorted=False)[1]
            group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
            score_mask = group_mask.unsqueeze(-1).expand(-1, G, E // G).reshape(-1, E)
            choice = choice.masked_fill(~score_mask.bool(), 0.0)
            topk_idx = torch.topk(choice, k=c.num_experts_per_tok, dim=-1, sorted=False)[1]
        topk_w = scores.gather(1, topk_idx)
        if c.norm_topk_prob:
            topk_w = topk_w / (topk_w.sum(dim=-1, keepdim=True) + 1e-20)
        return topk_idx, topk_w * c.routed_scaling_factor


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.gate = Router(c)
        self.experts = nn.ModuleList(
            MLP(c.hidden_size, c.moe_intermediate_size) for _ in range(c.n_routed_experts))
        self.shared_experts = MLP(c.hidden_size, c.moe_intermediate_size * c.n_shared_experts)
        self.load = torch.zeros(c.n_routed_experts)  # tokens per expert since the last update

    def forward(self, x):
        B, T, D = x.shape
        h = x.reshape(-1, D)
        topk_idx, topk_w = self.gate(h)
        out = torch.zeros_like(h)
        flat_idx = topk_idx.reshape(-1)
        flat_w = topk_w.reshape(-1)
        with torch.no_grad():
            self.load += torch.bincount(flat_idx, minlength=self.c.n_routed_experts).float()
            order = torch.argsort(flat_idx)  # the (token, slot) pairs grouped by expert
            counts = torch.bincount(flat_idx, minlength=self.c.n_routed_experts).tolist()
        k = self.c.num_experts_per_tok
        start = 0
        for e, n in enumerate(counts):
            if n == 0:
                continue
            pairs = order[start:start + n]
            start += n
            tokens = pairs // k
            y = self.experts[e](h.index_select(0, tokens)) * flat_w.index_select(0, pairs)[:, None]
            out.index_add_(0, tokens, y)
        return out.view(B, T, D) + self.shared_experts(x)


class Block(nn.Module):
    def __init__(self, c, i, attn):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = Attention(c, attn)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = MLP(c.hidden_size, c.intermediate_size) if i < c.first_k_dense_replace else MoE(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class DeepseekV3(nn.Module):
    def __init__(self, c, attn):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList(Block(c, i, attn) for i in range(c.num_hidden_layers))
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        dr = c.qk_rope_head_dim
        self.inv_freq = 1.0 / (c.rope_theta ** (torch.arange(0, dr, 2).float() / dr))

    def init_weights(self, std):
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=std)
            elif isinstance(m, Router):
                nn.init.normal_(m.weight, mean=0.0, std=std)

    def forward(self, ids):
        B, T = ids.shape
        freqs = torch.outer(torch.arange(T).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.ones(T, T, dtype=torch.bool).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))

    @torch.no_grad()
    def update_bias(self, gamma):
        # DeepSeek-V3's auxiliary-loss-free balancing: raise the bias of underloaded experts
        for m in self.modules():
            if isinstance(m, MoE):
                m.gate.e_score_correction_bias += gamma * torch.sign(m.load.mean() - m.load)
                m.load.zero_()


def blas_library():
    """Which BLAS does torch's sgemm: Debian's torch calls whatever libblas.so.3 resolves to."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/libblas.so" in line}
    except OSError:
        return "BLAS unknown"
    names = sorted(os.path.realpath(p) for p in paths)
    if not names:  # pip wheels: MKL or OpenBLAS linked in statically, or a libmkl_* / libopenblas*
        return "BLAS built in (torch.__config__.show() says which)"
    n = names[0]
    if "openblas" in n:
        try:  # the kernels OpenBLAS chose (or was told to use by OPENBLAS_CORETYPE)
            import ctypes
            lib = ctypes.CDLL(n)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return "OpenBLAS, %s kernels" % lib.openblas_get_corename().decode()
        except (OSError, AttributeError):
            return "OpenBLAS"
    for key, name in (("mkl", "MKL"), ("blis", "BLIS"), ("atlas", "ATLAS")):
        if key in n:
            return name
    return "reference BLAS (" + n + ")"


def run(c, attn):
    torch.manual_seed(args.seed)
    model = DeepseekV3(c, attn)
    model.init_weights(args.init_std)
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
    B, T, V = args.batch, args.seq, c.vocab_size
    ids = torch.randint(0, V, (B, T))

    def forward():
        logits = model(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))

    def backward(loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()

    def update():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_bias(1e-3)

    loss = forward()  # warm-up
    backward(loss)
    update()
    t_fwd = t_bwd = t_step = 0.0
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = forward()
        t1 = time.perf_counter()
        backward(loss)
        t2 = time.perf_counter()
        update()
        t3 = time.perf_counter()
        t_fwd += t1 - t0
        t_bwd += t2 - t1
        t_step += t3 - t0
    tokens = B * T * args.steps
    n_params = sum(p.numel() for p in model.parameters())
    tag = "pytorch %s%s" % (args.preset, "" if attn == "plain" else " sdpa")
    tail = "(threads %d, batch %dx%d, torch %s, %s, %s attention, %.2fM params, loss %.3f)" % (
        torch.get_num_threads(), B, T, torch.__version__, blas_library(), attn, n_params / 1e6,
        loss.item())
    print("%s forward          %9.0f tokens/s  %s" % (tag, tokens / t_fwd, tail))
    print("%s backward         %9.0f tokens/s  %s" % (tag, tokens / t_bwd, tail))
    print("%s forward+backward %9.0f tokens/s  %s" % (tag, tokens / (t_fwd + t_bwd), tail))
    print("%s train step       %9.0f tokens/s  %.3f s/step  %s" % (
        tag, tokens / t_step, t_step / args.steps, tail))
    sys.stdout.flush()
    if args.profile:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss = forward()
            backward(loss)
            update()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))


def main():
    torch.set_num_threads(args.threads)
    c = Config(PRESETS[args.preset])
    if args.seq > c.max_position_embeddings:
        sys.exit("bench_pytorch: --seq %d exceeds max_position_embeddings %d of preset %s" % (
            args.seq, c.max_position_embeddings, args.preset))
    variants = ["plain", "sdpa"] if args.attn == "both" else [args.attn]
    for attn in variants:
        if attn == "sdpa":
            if not hasattr(F, "scaled_dot_product_attention"):
                print("pytorch %s sdpa: F.scaled_dot_product_attention needs torch >= 2.0 "
                      "(this is torch %s); skipped" % (args.preset, torch.__version__))
                continue
        run(c, attn)


if __name__ == "__main__":
    main()
