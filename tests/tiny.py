"""Tiny random transformers models built from configs (no download), float64."""

import torch


def tiny_llama(attn="eager", vocab=64, seed=0, max_positions=2048):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
                      attn_implementation=attn, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).double().eval()


def tiny_gemma3(attn="eager", vocab=64, seed=0, window=8):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                           sliding_window=window, attn_implementation=attn, bos_token_id=None, eos_token_id=None,
                           pad_token_id=0,
                           layer_types=["sliding_attention"] * 3 + ["full_attention"])
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(cfg).double().eval()


def tiny_qwen2(attn="eager", vocab=64, seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      attn_implementation=attn, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(cfg).double().eval()


def reference(model, prompt, n, eos=None):
    """Plain greedy decoding with transformers' own generate."""
    out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n,
                         min_new_tokens=None if eos is not None else n, pad_token_id=0, eos_token_id=eos)
    return out[0, len(prompt):].tolist()
