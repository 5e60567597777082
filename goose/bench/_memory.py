"""Memory: goose's peak resident set next to stock transformers' ``generate``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["batch_peak_rss_mb", "peak_rss_mb", "stock_peak_rss_mb"]

# Runs in a fresh interpreter that imports only torch and transformers: load the model
# as transformers does, greedy-generate, report the peak resident set. It reads VmHWM,
# the high-water mark of its own address space: ru_maxrss would not do, since Linux
# carries it across execve, so a child would report its parent's peak.
_STOCK = """
import json, sys
import torch
from transformers import AutoModelForCausalLM
path, ids, new, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
x = torch.tensor([ids])
with torch.inference_mode():
    model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new, do_sample=False)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))
"""


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB: ``VmHWM`` where ``/proc`` has
    it, else ``ru_maxrss`` (which on Linux may include the parent's peak before exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stock_peak_rss_mb(model_path: str, prompt: Sequence[int], max_new_tokens: int, threads: int = 0) -> float:
    """Peak resident set, in MiB, of a fresh Python process that loads ``model_path``
    with stock transformers (float32, sdpa) and greedy-generates ``max_new_tokens``
    after ``prompt``: the baseline goose's memory is measured against."""
    out = subprocess.run([sys.executable, "-c", _STOCK, str(model_path), json.dumps([int(t) for t in prompt]),
                          str(int(max_new_tokens)), str(int(threads))], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the stock transformers run failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kib"] / 1024


_STOCK_BATCH = """
import json, sys
import torch
from transformers import AutoModelForCausalLM
path, rows, new, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa").eval()
width = max(len(r) for r in rows)
x = torch.tensor([[0] * (width - len(r)) + r for r in rows])
mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
with torch.inference_mode():
    model.generate(x, attention_mask=mask, max_new_tokens=new, do_sample=False, pad_token_id=0)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))
"""

_GOOSE_BATCH = """
import json, sys
import torch
import goose
name, rows, new, threads, method = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if threads:
    torch.set_num_threads(threads)
model, _ = goose.load_model(name)
goose.generate_batch(model, rows, method=method, max_new_tokens=new)
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))
"""


def _peak(script: str, *args: object) -> float:
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the peak-memory run failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kib"] / 1024


def batch_peak_rss_mb(model_name: str, model_path: str, rows: Sequence[Sequence[int]], max_new_tokens: int,
                      method: str, threads: int = 0) -> dict[str, float]:
    """Peak resident sets, in MiB, of two fresh processes on the same batch of prompts:
    stock transformers' batched greedy ``generate`` (float32, sdpa, left padding) and
    goose's :func:`~goose.hf.generate_batch` with ``method`` (the model as
    ``goose.load_model`` gives it)."""
    data = json.dumps([[int(t) for t in r] for r in rows])
    return {"stock_batch_generate_peak_mb": _peak(_STOCK_BATCH, model_path, data, max_new_tokens, threads),
            "goose_batch_peak_mb": _peak(_GOOSE_BATCH, model_name, data, max_new_tokens, threads, method)}
