#!/usr/bin/env python3
"""A CPU check of train_pairs.py, for any machine with torch, transformers, peft and accelerate (no GPU needed).

  python3 python/check_pairs_cpu.py

1. Reward: with learning rate 0 the saved adapter is the model the first step ran, so the step's reported loss
   must equal -log sigmoid(r_chosen - r_rejected) averaged over that window's pairs, each text scored alone
   (no padding) as the reward at its last token: padding, the pad id, the last-token read and the pair mean.
2. DPO: starting from a non-zero adapter against the base as reference (learning rate 0), the reported loss equals
   the closed form -log sigmoid(beta [(pi_c - ref_c) - (pi_r - ref_r)]) with log-probs summed over each response,
   computed sequence by sequence; likewise for IPO, for label smoothing, and for another adapter as reference.
3. Two processes (gloo) with gradient accumulation 2 train the same reward model as one process with 4.
Prints one JSON line with the figures; exits non-zero when a check fails.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def run(argv):
    import train_pairs
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = train_pairs.main(argv)
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert code == 0, events
    return events


def first_window(train_pairs, tokenizer, data, batch_size, accumulation, seed):
    items, _ = train_pairs.tokenize_pairs(tokenizer, train_pairs.read_pairs(data), 2048, "error")
    batches = train_pairs.bucketed_pairs(items, batch_size, seed)
    batches = batches + [batches[i % len(batches)] for i in range((-len(batches)) % accumulation)]
    return [item for batch in batches[:accumulation] for item in batch]


def main():
    import torch
    import train_pairs
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    work = tempfile.mkdtemp(prefix="train-pairs-check-")
    model_dir = os.path.join(work, "tiny")
    subprocess.run([sys.executable, os.path.join(HERE, "make_tiny_hf_model.py"), "--output", model_dir],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    data = os.path.join(work, "pairs.jsonl")
    with open(data, "w", encoding="utf-8") as f:
        for i in range(10):
            # Responses of very different lengths, so rows are padded differently within a micro-batch.
            f.write(json.dumps({"prompt": f"Question {i}: which is better? Answer:",
                                "chosen": " yes" + " and more words" * (i % 4),
                                "rejected": " no" + " other words here" * ((i + 2) % 3)}) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch_size, accumulation, seed = 2, 2, 5
    def arguments(accumulation_steps):
        return ["--model", model_dir, "--data", data, "--rank", "4", "--batch-size", str(batch_size),
                "--gradient-accumulation", str(accumulation_steps), "--seed", str(seed), "--dropout", "0",
                "--dtype", "float32"]
    common = arguments(accumulation) + ["--max-steps", "1", "--learning-rate", "0"]
    window = first_window(train_pairs, tokenizer, data, batch_size, accumulation, seed)
    figures, ok = {}, True

    # 1. Reward.
    rm_dir = os.path.join(work, "rm")
    events = run(["--kind", "reward", "--output", rm_dir] + common)
    reported = next(e for e in events if e["event"] == "train-step")["loss"]
    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1, dtype=torch.float32)
    rm = PeftModel.from_pretrained(base, rm_dir).eval()
    with torch.no_grad():
        def score(side):
            return float(rm(input_ids=torch.tensor([side["input_ids"]])).logits[0, 0])
        direct = sum(math.log1p(math.exp(-(score(i["chosen"]) - score(i["rejected"])))) for i in window) / len(window)
    figures["reward_reported_loss"], figures["reward_direct_loss"] = reported, direct
    ok &= abs(reported - direct) < 1e-5

    # 2. DPO variants, from a non-zero adapter (random lora_B) against the base or against another adapter.
    def random_adapter(path, seed_value):
        torch.manual_seed(seed_value)
        causal = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        peft_model = get_peft_model(causal, LoraConfig(r=4, lora_alpha=8, lora_dropout=0, init_lora_weights=False,
                                                       target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
        peft_model.save_pretrained(path)
    start, other = os.path.join(work, "start"), os.path.join(work, "other")
    random_adapter(start, 1)
    random_adapter(other, 2)

    def log_probs(model, side):
        ids = torch.tensor([side["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        picked = torch.log_softmax(logits, -1).gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1)
        return float(picked[side["start"] - 1:].sum()), len(side["input_ids"]) - side["start"]

    def load(adapter):
        causal = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        return causal.eval() if adapter is None else PeftModel.from_pretrained(causal, adapter).eval()

    policy = load(start)
    for name, extra, reference_dir in (
            ("dpo", ["--beta", "0.3"], None),
            ("cdpo", ["--beta", "0.3", "--label-smoothing", "0.2"], None),
            ("ipo", ["--beta", "0.3", "--loss", "ipo"], None),
            ("dpo_other_reference", ["--beta", "0.3", "--reference", other], other)):
        events = run(["--kind", "preference", "--init-adapter", start, "--output", os.path.join(work, name)]
                     + ([] if reference_dir else ["--reference", "base"]) + extra + common)
        reported = next(e for e in events if e["event"] == "train-step")["loss"]
        reference = load(reference_dir)
        beta, smoothing = 0.3, 0.2 if name == "cdpo" else 0.0
        total = 0.0
        for item in window:
            (pc, nc), (pr, nr) = log_probs(policy, item["chosen"]), log_probs(policy, item["rejected"])
            (rc, _), (rr, _) = log_probs(reference, item["chosen"]), log_probs(reference, item["rejected"])
            if name == "ipo":
                h = (pc - rc) / nc - (pr - rr) / nr
                total += (h - 1 / (2 * beta)) ** 2
            else:
                h = beta * ((pc - rc) - (pr - rr))
                total += (1 - smoothing) * math.log1p(math.exp(-h)) + smoothing * math.log1p(math.exp(h))
        direct = total / len(window)
        figures[f"{name}_reported_loss"], figures[f"{name}_direct_loss"] = reported, direct
        ok &= abs(reported - direct) < 1e-5 and abs(direct - math.log(2)) > 1e-3

    # 3. One process x 4 micro-batches == two processes x 2 micro-batches (reward, 2 steps).
    steps = ["--max-steps", "2", "--learning-rate", "0.01", "--kind", "reward"]
    single = run(arguments(4) + steps + ["--output", os.path.join(work, "p1")])
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", os.path.join(HERE, "train_pairs.py")]
        + arguments(2) + steps + ["--output", os.path.join(work, "p2")],
        env={**os.environ, "ACCELERATE_USE_CPU": "true"}, capture_output=True, text=True, check=True)
    single_losses = [e["loss"] for e in single if e["event"] == "train-step"]
    two_losses = [json.loads(line)["loss"] for line in two.stdout.splitlines() if '"train-step"' in line]
    from safetensors.torch import load_file
    a = load_file(os.path.join(work, "p1", "adapter_model.safetensors"))
    b = load_file(os.path.join(work, "p2", "adapter_model.safetensors"))
    difference = max(float((a[k] - b[k]).abs().max()) for k in a)
    figures.update(one_process_losses=single_losses, two_process_losses=two_losses,
                   adapter_difference_one_vs_two_processes=difference,
                   score_in_adapter="base_model.model.score.weight" in a)
    ok &= (len(two_losses) == 2 and all(abs(x - y) < 1e-5 for x, y in zip(single_losses, two_losses))
           and difference < 1e-5 and figures["score_in_adapter"])
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
