#!/usr/bin/env python3
"""A CPU check of train_lora.py, for any machine with torch, transformers, peft and accelerate (no GPU needed).

  python3 python/check_cpu.py

1. The loss of an optimizer step is the mean over every label token of its window: with LoRA's zero-initialised
   B the first step's model is the base model, so the reported loss must equal a direct computation over the
   same window's examples (token-weighted), which differs from the mean of per-micro-batch means.
2. A few real steps save an adapter with only LoRA tensors, in float32, that PEFT loads back.
3. Two processes (torch.distributed, gloo) with gradient accumulation 2 train the same adapter as one process with
   accumulation 4: the same windows, the same per-token loss, the same update.
Prints one JSON line with the figures; exits non-zero when a check fails.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def run_training(argv):
    import train_lora
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train_lora.main(argv)
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return code, events


def main():
    import torch
    import train_lora
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = tempfile.mkdtemp(prefix="train-lora-check-")
    model_dir = os.path.join(work, "tiny")
    subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_hf_model.py"), "--output", model_dir],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = os.path.join(work, "sft.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for i in range(10):
            # Completions of very different lengths, so micro-batches hold different token counts.
            f.write(json.dumps({"prompt": f"Question {i}: say something. Answer:",
                                "completion": " ok." if i % 2 else " " + "words and more words " * (1 + i)}) + "\n")

    batch_size, accumulation, seed = 2, 2, 3
    common = ["--model", model_dir, "--data", data, "--rank", "4", "--batch-size", str(batch_size),
              "--gradient-accumulation", str(accumulation), "--seed", str(seed), "--dropout", "0"]
    code, events = run_training(common + ["--output", os.path.join(work, "a0"), "--max-steps", "1",
                                          "--learning-rate", "0"])
    assert code == 0, events
    reported = next(e for e in events if e["event"] == "train-step")["loss"]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    items = [train_lora.tokenize_example(tokenizer, p, c, 2048, "error") for p, c in train_lora.read_examples(data)]
    items = [item for item in items if item is not None]
    batches = train_lora.length_bucketed(items, batch_size, seed)
    window = batches + [batches[i % len(batches)] for i in range((-len(batches)) % accumulation)]
    window = window[:accumulation]
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    total, tokens, means = 0.0, 0, []
    with torch.no_grad():
        for micro_batch in window:
            for item in micro_batch:
                ids = torch.tensor([item["input_ids"]])
                labels = torch.tensor([item["labels"]])
                logits = base(input_ids=ids).logits[0, :-1]
                target = labels[0, 1:]
                keep = target != -100
                losses = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="none")
                total += float(losses.sum())
                tokens += int(keep.sum())
            pad = tokenizer.pad_token_id
            means.append(float(base(**{k: v for k, v in train_lora.collate(micro_batch, pad).items()}).loss))
    per_token = total / tokens
    per_batch_mean = sum(means) / len(means)

    code, events = run_training(common + ["--output", os.path.join(work, "a1"), "--max-steps", "3",
                                          "--learning-rate", "0.01"])
    assert code == 0, events
    from safetensors import safe_open
    with safe_open(os.path.join(work, "a1", "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
        dtypes = sorted({str(f.get_tensor(k).dtype) for k in keys})
    from peft import PeftModel
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), os.path.join(work, "a1"))
    # 3: one process x 4 micro-batches == two processes x 2 micro-batches.
    distributed = ["--max-steps", "2", "--learning-rate", "0.01"]
    code, single = run_training(common[:-4] + ["--gradient-accumulation", "4", "--seed", str(seed), "--dropout", "0",
                                                "--output", os.path.join(work, "p1")] + distributed)
    assert code == 0, single
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", os.path.join(HERE, "train_lora.py")]
        + common[:-4] + ["--gradient-accumulation", "2", "--seed", str(seed), "--dropout", "0",
                         "--output", os.path.join(work, "p2")] + distributed,
        env={**os.environ, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, check=True)
    two_losses = [json.loads(line)["loss"] for line in two.stdout.splitlines() if '"train-step"' in line]
    from safetensors.torch import load_file
    a = load_file(os.path.join(work, "p1", "adapter_model.safetensors"))
    b = load_file(os.path.join(work, "p2", "adapter_model.safetensors"))
    weight_difference = max(float((a[k] - b[k]).abs().max()) for k in a)
    largest_weight = max(float(a[k].abs().max()) for k in a if "lora_B" in k)
    single_losses = [e["loss"] for e in single if e["event"] == "train-step"]

    figures = {
        "reported_step_loss": reported,
        "token_mean_loss": per_token,
        "mean_of_micro_batch_means": per_batch_mean,
        "adapter_tensors": len(keys),
        "adapter_dtypes": dtypes,
        "losses": [e["loss"] for e in events if e["event"] == "train-step"],
        "one_process_losses": single_losses,
        "two_process_losses": two_losses,
        "adapter_difference_one_vs_two_processes": weight_difference,
        "largest_lora_b_weight": largest_weight,
    }
    print(json.dumps(figures))
    ok = (abs(reported - per_token) < 1e-4 and abs(per_token - per_batch_mean) > 1e-4
          and all("lora_" in k for k in keys) and dtypes == ["torch.float32"]
          and len(two_losses) == 2 and all(abs(x - y) < 1e-5 for x, y in zip(single_losses, two_losses))
          and weight_difference < 1e-5)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
