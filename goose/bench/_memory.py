"""Memory: goose's peak resident set next to stock transformers' ``generate``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["peak_rss_mb", "stock_peak_rss_mb"]

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
