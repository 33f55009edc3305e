"""Checks that a run directory written by ./r1 (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json) works in Hugging Face transformers as one unit: AutoTokenizer encodes the
prompt to the ids ./r1 uses, and DeepseekV3ForCausalLM's greedy continuation equals ./r1's.

    ./r1 sample --model DIR --prompt "TEXT" --template none --max-new-tokens 16 --print-ids > r1_ids.txt
    python3 tests/check_hf_unit.py DIR "TEXT" r1_ids.txt

(r1 prepends BOS to the prompt; so does this script.)
"""
import sys

import torch
from transformers import AutoTokenizer, DeepseekV3ForCausalLM

directory, text, ids_file = sys.argv[1], sys.argv[2], sys.argv[3]
expected = [int(x) for x in open(ids_file).read().split()]
tok = AutoTokenizer.from_pretrained(directory)
prompt = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
print("prompt ids  (transformers):", prompt)
print("prompt ids  (r1):          ", expected[:len(prompt)])
model = DeepseekV3ForCausalLM.from_pretrained(directory, torch_dtype=torch.float32).eval()
with torch.no_grad():
    out = model.generate(torch.tensor([prompt]), do_sample=False,
                         max_new_tokens=len(expected) - len(prompt),
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
got = out[0].tolist()
print("greedy ids  (transformers):", got)
print("greedy ids  (r1):          ", expected)
print("decoded (transformers):", repr(tok.decode(got[len(prompt):])))
ok = got == expected
print("IDENTICAL" if ok else "DIFFERENT")
sys.exit(0 if ok else 1)
