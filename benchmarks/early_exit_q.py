"""SmolLM2, 14 release dev prompts (2 per task), T = 0.8, top-p 0.95: how close is the cheapest
training-free draft model at hand, the target's own hidden state after layer L read through its
final norm and head (early exit), to the target's processed law p? Per exit layer, the means over
positions of 1 - TV(p, q) (slot 1's acceptance when a child is drawn from q), p(argmax q) (what a
top-1 child of q is worth) and max p. q is softmax(logits_L / T), the law `StochasticShaper`
draws from. The text is the target's own sample (`model.generate(do_sample=True)`, 128 tokens,
seeded), read back teacher-forced in one pass. The last layer is a check: it must give
1 - TV = 1 up to top-p (q keeps the tail that p cuts). Two more drafts of the same kind end
the table: the target with its middle layers 13-16 skipped (layer skipping, as in
self-speculative decoding), and the target's bfloat16 copy (``HFTarget.low_precision_copy``, the
``bf16-draft`` method's q), both at full depth.

    python benchmarks/early_exit_q.py [layers, comma-separated]

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a
test. Compare with the STAND table's columns in docs/benchmarks.md (`goose compare-drafting`).
"""

import copy
import sys

import numpy as np
import torch

from goose.bench import load_prompts, load_reference
from goose.hf import HFTarget, encode_prompt, load_model
from goose.verify import process_logits

T, TOP_P, NEW = 0.8, 0.95, 128
RELEASE_DEV_IDS = load_reference("release-dev")["ids"]
model, tok = load_model("smollm2")
n_layers = model.config.num_hidden_layers
layers = [int(x) for x in sys.argv[1].split(",")] if len(sys.argv) > 1 else [16, 22, 26, 28, 29, n_layers]
ids = [v[0] for v in RELEASE_DEV_IDS.values()] + [v[1] for v in RELEASE_DEV_IDS.values()]
SKIPPED = range(13, 17)
bf16 = HFTarget(model).low_precision_copy()
skipping = copy.deepcopy(model)  # the same weights with layers 13-16 left out
skipping.model.layers = torch.nn.ModuleList(layer for i, layer in enumerate(model.model.layers) if i not in SKIPPED)
stats: dict[int | str, list[np.ndarray]] = {L: [] for L in [*layers, "skip", "bf16"]}
p_max: list[np.ndarray] = []
torch.set_grad_enabled(False)
for i, prompt in enumerate(load_prompts(list(RELEASE_DEV_IDS), ids=ids)):
    x = torch.tensor([encode_prompt(tok, prompt.text, prompt.chat)])
    torch.manual_seed(i)
    seq = model.generate(x, do_sample=True, temperature=T, top_p=TOP_P, max_new_tokens=NEW)
    out = model(seq, output_hidden_states=True)
    rows = slice(x.shape[1] - 1, seq.shape[1] - 1)  # the rows that predicted the new tokens
    p = process_logits(out.logits[0, rows].float(), T, 0, TOP_P).softmax(-1)  # [new, vocab]
    p_max.append(p.max(-1).values.numpy())
    skip_logits = skipping(seq, use_cache=False).logits[0, rows]
    drafts = [(L, model.lm_head(out.hidden_states[L][0, rows] if L == n_layers  # the last entry is already normed
                                else model.model.norm(out.hidden_states[L][0, rows]))) for L in layers]
    drafts += [("skip", skip_logits), ("bf16", bf16(seq).logits[0, rows])]
    for L, logits in drafts:
        q = (logits.float() / T).softmax(-1)  # [new, vocab]
        overlap = torch.minimum(p, q).sum(-1)
        top1 = p.gather(-1, q.argmax(-1, keepdim=True))[:, 0]
        stats[L].append(torch.stack([overlap, top1], -1).numpy())
    print(f"{prompt.task} {prompt.qid}: {seq.shape[1] - x.shape[1]} tokens", file=sys.stderr)

NAMES = {"skip": f"skip layers {SKIPPED.start}-{SKIPPED.stop - 1}", "bf16": "bfloat16 copy"}
print(f"| draft: exit after layer (of {n_layers}) | 1 - TV(p, q) | p(argmax q) | max p |")
print("|---|---|---|---|")
mp = float(np.concatenate(p_max).mean())
for L in stats:
    a = np.concatenate(stats[L])
    print(f"| {NAMES.get(L, L)} | {a[:, 0].mean():.3f} | {a[:, 1].mean():.3f} | {mp:.3f} |")
