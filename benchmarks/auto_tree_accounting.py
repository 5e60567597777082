"""SmolLM2, 14 release dev prompts (2 per task), ``--budget auto``: per kept tree size, how many
steps, the predicted E[A] per step (sum of path probabilities of the kept tree) and the accepted
tokens per step; and how many steps drafted nothing at all.

    python benchmarks/auto_tree_accounting.py goose,pld

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
MAT only: the numbers do not depend on timing, except through the calibrated cost curve.
"""

import sys
from collections import Counter, defaultdict

from goose.bench import load_prompts, load_reference
from goose.hf import encode_prompt, generate, load_model
from goose.trees import AutoBudgetShaper, path_probabilities

RELEASE_DEV_IDS = load_reference("release-dev")["ids"]
model, tok = load_model("smollm2")
ids = [v[0] for v in RELEASE_DEV_IDS.values()] + [v[1] for v in RELEASE_DEV_IDS.values()]
prompts = load_prompts(list(RELEASE_DEV_IDS), ids=ids)
steps: list[list] = []  # [kept size, predicted E[A], accepted, sources]
shape, record = AutoBudgetShaper.shape, AutoBudgetShaper.record


def probe_shape(self, context, sources, budget):
    tree = shape(self, context, sources, budget)
    prob = path_probabilities(tree)
    steps.append([tree.size, float(prob[1:].sum()), None, Counter(tree.sources[1:])])
    return tree


def probe_record(self, tree, accepted):
    steps[-1][2] = len(accepted)
    return record(self, tree, accepted)


AutoBudgetShaper.shape, AutoBudgetShaper.record = probe_shape, probe_record
for method in (sys.argv[1] if len(sys.argv) > 1 else "goose,pld").split(","):
    steps.clear()
    for p in prompts:
        generate(model, encode_prompt(tok, p.text, p.chat), method=method, budget="auto", max_new_tokens=128)
    by = defaultdict(lambda: [0, 0.0, 0])
    for size, pred, acc, _ in steps:
        row = by[min(size, 9)]
        row[0] += 1
        row[1] += pred
        row[2] += acc
    print(f"{method}: {len(steps)} steps, predicted {sum(s[1] for s in steps):.1f} accepted tokens, "
          f"got {sum(s[2] for s in steps)}; {by[0][0]} steps drafted nothing")
    for size in sorted(by):
        n, pred, acc = by[size]
        print(f"  size {size}{'+' if size == 9 else ''}: {n} steps, predicted {pred / n:.2f}, accepted {acc / n:.2f} per step")
