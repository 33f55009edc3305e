"""Checks that checkpoints written by ./r1 load in Hugging Face transformers and give the same
logits as ./r1 itself. Needs torch + transformers (run it where they are installed):

    python3 tests/check_hf_load.py            # every tests/fixtures/r1_saved_* directory

Each r1_saved_<case>/ holds config.json + model.safetensors written by `./r1 train --init ...
--out` (or from scratch for r1_saved_tiny) and r1_logits.safetensors written by `./r1 forward`
on the input_ids of tests/fixtures/<case>/reference.safetensors (base for tiny), or of its own
r1_input.safetensors (r1_saved_qwen2, r1_saved_llama: Qwen2 / Llama checkpoints, which
make_qwen_reference.py --check also compares).
"""
import glob
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
worst = 0.0
for d in sorted(glob.glob(os.path.join(here, "fixtures", "r1_saved_*"))):
    case = os.path.basename(d)[len("r1_saved_"):]
    ref_case = "base" if case == "tiny" else case
    own = os.path.join(d, "r1_input.safetensors")
    ids_file = own if os.path.exists(own) else os.path.join(here, "fixtures", ref_case,
                                                                  "reference.safetensors")
    ids = load_file(ids_file)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(ids.long()).logits
    ours = load_file(os.path.join(d, "r1_logits.safetensors"))["logits"]
    rel = ((logits - ours).norm() / ours.norm()).item()
    worst = max(worst, rel)
    print(f"{case:10s} transformers vs r1 logits: relative L2 {rel:.2e}")
print("worst", worst)
sys.exit(0 if worst < 1e-4 else 1)
