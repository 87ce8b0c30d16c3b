#!/usr/bin/env python3
"""Creates a tiny random LlamaForCausalLM in Hugging Face format, with its own tokenizer, for GPU checks.

No download: the tokenizer is a byte-level BPE trained here on a few lines of text, and the weights are
random (seeded). The result loads with AutoModelForCausalLM / AutoTokenizer and trains with train_lora.py:

  python3 python/make_tiny_hf_model.py --output /tmp/tiny-llama
  accelerate launch --config_file python/configs/single_gpu.yaml python/train_lora.py \\
      --model /tmp/tiny-llama --data sft.jsonl --output /tmp/adapter
"""

import argparse
import json
import os

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: what is the capital of France? Answer: Paris.",
    "As an AI assistant, I follow the principles: be helpful, honest and harmless.",
    "User: please explain photosynthesis. Assistant: plants turn light, water and CO2 into sugar.",
    "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--intermediate-size", type=int, default=160)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--context", type=int, default=512)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=args.vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS * 20, trainer=trainer)
    # Prepend BOS to every encoding, as LLaMA tokenizers do.
    bpe.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bpe.token_to_id("<s>"))])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", pad_token="<pad>")

    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        max_position_embeddings=args.context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    os.makedirs(args.output, exist_ok=True)
    model.save_pretrained(args.output, safe_serialization=True)
    tokenizer.save_pretrained(args.output)
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"event": "model-created", "output": os.path.abspath(args.output), "parameters": parameters,
                      "vocab_size": config.vocab_size}))


if __name__ == "__main__":
    main()
