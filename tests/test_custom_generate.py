"""goose as transformers' decoding loop (``model.generate(custom_generate=...)``): logits
processors per node path, seeded sampling; tiny float64 models."""

import numpy as np
import pytest
import torch

from .tiny import tiny_llama

pytestmark = pytest.mark.model

PROMPTS = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], list(np.random.default_rng(0).integers(1, 64, 20))]


@pytest.mark.parametrize("processors", [{}, {"repetition_penalty": 1.5}, {"no_repeat_ngram_size": 3}])
def test_custom_generate_hook_matches_generate_with_processors(processors):
    from goose.hf import custom_generate

    model = tiny_llama()
    x = torch.tensor([PROMPTS[0]])
    ref = model.generate(x, do_sample=False, max_new_tokens=40, pad_token_id=0, **processors)
    for method in ("goose", "tr", "pld"):
        out = model.generate(x, do_sample=False, max_new_tokens=40, pad_token_id=0,
                             custom_generate=custom_generate, goose_method=method, **processors)
        assert torch.equal(out, ref)


def test_processors_must_see_the_node_path():
    """Negative control: processing every node with the committed history only (not its
    own path) breaks a path-dependent processor. (No-repeat n-grams show it; transformers'
    repetition penalty is set-based and path tokens are usually in the history already.)"""
    import goose.hf as gh

    class CommittedOnly(gh.ProcessorVerifier):
        def verify(self, tree, logits):
            from goose.verify import sample_and_match

            ids = torch.tensor([self.committed])
            return sample_and_match(tree, lambda v: int(self.processors(ids, logits[v:v + 1].float())[0].argmax()))

    model = tiny_llama()
    x = torch.tensor([PROMPTS[0]])
    ref = model.generate(x, do_sample=False, max_new_tokens=40, pad_token_id=0, no_repeat_ngram_size=2)
    import goose.hf._generate as module  # where custom_generate looks its verifier up

    original = module.ProcessorVerifier
    module.ProcessorVerifier = CommittedOnly
    try:
        out = model.generate(x, do_sample=False, max_new_tokens=40, pad_token_id=0, no_repeat_ngram_size=2,
                             custom_generate=gh.custom_generate, goose_method="goose")
    finally:
        module.ProcessorVerifier = original
    assert not torch.equal(out, ref)


def test_custom_generate_sampling_is_seeded():
    from goose.hf import custom_generate

    model = tiny_llama()
    x = torch.tensor([PROMPTS[0]])
    runs = [model.generate(x, do_sample=True, temperature=0.8, top_p=0.95, max_new_tokens=20, pad_token_id=0,
                           custom_generate=custom_generate, goose_seed=s) for s in (4, 4, 5)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])
