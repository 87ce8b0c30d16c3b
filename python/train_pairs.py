#!/usr/bin/env python3
"""Reward models and DPO on GPUs for selfalign's `hf` trainer (src/training/hf/): the `reward` and `preference` kinds.

Reads selfalign's pair JSONL ({"prompt", "chosen", "rejected"} per line), the same files the embedded trainer reads,
and trains a PEFT LoRA on a Hugging Face model:

  --kind reward       AutoModelForSequenceClassification (num_labels 1; LlamaForSequenceClassification for LLaMA),
                      LoRA with the `score` head in modules_to_save (PEFT task SEQ_CLS). Each text is BOS +
                      tokens(prompt + response), right-padded; the reward is read at its last real token (as TRL and
                      OpenRLHF read it). Loss: -log sigmoid(r_chosen - r_rejected), the mean over a step's pairs.
  --kind preference   DPO on a causal LM against a frozen reference (the starting adapter, the base, or another
                      PEFT adapter): -(1 - e) log sigmoid(h) - e log sigmoid(-h), h = beta [(pi_c - ref_c) -
                      (pi_r - ref_r)] on summed response log-probs (e = label smoothing, conservative DPO), or IPO's
                      (h' - 1/(2 beta))^2 on per-token means. Reference log-probs are computed once, before training.

Runs under `accelerate launch` like train_lora.py (whose helpers it shares) or plain python3. The stdout protocol is
train_lora.py's, with pair metrics: "train-step" also carries "accuracy" and "margin" (mean chosen-minus-rejected
reward; DPO: the implicit reward beta log(pi/ref)), and held-out pairs (--eval-data) give
  {"event": "train-eval", "step": s, "total_steps": N, "loss": x, "accuracy": a, "margin": m, "examples": n}
at step 0, every --eval-every steps and at the end. A reward model also writes selfalign-reward.json (hidden size,
whether the tokenizer adds BOS) next to the adapter, for the conversion back to a GGUF LoRA + head.
"""

import argparse
import json
import math
import os
import random
import sys
import time

from train_lora import backward_scale, deepspeed_settings, emit, trainable_state_dict

KINDS = ("reward", "preference")
LOSSES = ("sigmoid", "ipo")
REWARD_INFO_FILE = "selfalign-reward.json"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=KINDS, required=True)
    p.add_argument("--model", required=True, help="Hugging Face model directory or hub id")
    p.add_argument("--data", required=True, help="pair JSONL with prompt, chosen and rejected fields")
    p.add_argument("--eval-data", default=None, help="held-out pairs in the same format")
    p.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at the start and end only)")
    p.add_argument("--output", required=True, help="directory for the PEFT adapter")
    p.add_argument("--init-adapter", default=None, help="a PEFT adapter to start from instead of a fresh LoRA")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=16)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names")
    p.add_argument("--learning-rate", type=float, default=4e-4)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per micro-batch per process")
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--cutoff-len", type=int, default=2048)
    p.add_argument("--overlong", choices=["error", "truncate", "drop"], default="error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--beta", type=float, default=0.1, help="preference: DPO beta")
    p.add_argument("--loss", choices=LOSSES, default="sigmoid", help="preference: sigmoid (DPO) or ipo")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="preference: conservative DPO, in [0, 0.5)")
    p.add_argument("--reference", default="init",
                   help="preference: init (the starting adapter, or the base without one), base, or a PEFT folder")
    args = p.parse_args(argv)
    problems = check_args(args)
    if problems:
        p.error("; ".join(problems))
    return args


def check_args(args):
    """What is wrong with a combination of arguments argparse alone accepts (empty when nothing)."""
    problems = []
    if args.kind == "preference":
        if not args.beta > 0:
            problems.append(f"--beta must be > 0, got {args.beta}")
        if not 0 <= args.label_smoothing < 0.5:
            problems.append(f"--label-smoothing must be in [0, 0.5), got {args.label_smoothing}")
        if args.label_smoothing > 0 and args.loss != "sigmoid":
            problems.append("--label-smoothing applies to the sigmoid (DPO) loss only")
    elif args.reference != "init" or args.label_smoothing != 0 or args.loss != "sigmoid":
        problems.append("--reference, --loss and --label-smoothing apply to --kind preference only")
    for name in ("batch_size", "gradient_accumulation", "cutoff_len"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    return problems


def read_pairs(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            names = ("prompt", "chosen", "rejected")
            fields = [record.get(name) if isinstance(record, dict) else None for name in names]
            if not all(isinstance(value, str) for value in fields):
                raise ValueError(f"{path}, line {number}: expected string fields prompt, chosen and rejected")
            pairs.append(tuple(fields))
    return pairs


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def tokenize_side(tokenizer, prompt, response, cutoff_len, overlong, label):
    """Token ids of prompt + response as the tokenizer encodes a text (BOS first where it adds one), and where the
    response starts: the end of the longest common prefix with the prompt alone, so a token merged across the
    boundary belongs to the response. None when the response is empty or the text is dropped for its length."""
    full = tokenizer(prompt + response, add_special_tokens=True)["input_ids"]
    alone = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    # The first token is never predicted: with no BOS, a text's first token belongs to the prompt.
    start = max(common_prefix(full, alone), 1)
    if start >= len(full):
        return None
    if len(full) > cutoff_len:
        if overlong == "error":
            raise ValueError(
                f"{label} has {len(full)} tokens, more than --cutoff-len {cutoff_len}; raise it, or pass --overlong "
                "truncate or drop")
        if overlong == "drop" or start >= cutoff_len - 1:
            return None
        full = full[:cutoff_len]
    return {"input_ids": full, "start": start}


def tokenize_pairs(tokenizer, pairs, cutoff_len, overlong, what="pair"):
    """Tokenised pairs (index, chosen, rejected); a pair whose either side is dropped is dropped whole."""
    items, dropped = [], 0
    for index, (prompt, chosen, rejected) in enumerate(pairs):
        sides = [tokenize_side(tokenizer, prompt, response, cutoff_len, overlong,
                               f"{what} {index}: the {name} response")
                 for name, response in (("chosen", chosen), ("rejected", rejected))]
        if sides[0] is None or sides[1] is None:
            dropped += 1
            continue
        items.append({"index": index, "chosen": sides[0], "rejected": sides[1]})
    return items, dropped


def pair_length(item):
    return len(item["chosen"]["input_ids"]) + len(item["rejected"]["input_ids"])


def bucketed_pairs(items, batch_size, seed):
    """Batches of pairs of similar length, in a seeded random order."""
    rng = random.Random(seed)
    order = sorted(range(len(items)), key=lambda i: (pair_length(items[i]), rng.random()))
    batches = [[items[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def free_pad_id(sequences, preferred):
    """A pad id that is no sequence's last token.

    AutoModelForSequenceClassification reads the score at the rightmost token that is not the pad id; with right
    padding that is the last real token unless that token is the pad id itself, so the pad is chosen to avoid it.
    """
    last = {sequence[-1] for sequence in sequences}
    if preferred is not None and preferred not in last:
        return preferred
    candidate = 0
    while candidate in last:
        candidate += 1
    return candidate


def collate_sides(batch, pad_id):
    """Right-padded input_ids, attention_mask and labels (-100 before each response and on padding), chosen sides
    first then rejected sides: rows i and i + len(batch) are one pair."""
    import torch
    sides = [item["chosen"] for item in batch] + [item["rejected"] for item in batch]
    width = max(len(side["input_ids"]) for side in sides)
    input_ids = torch.full((len(sides), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sides), width), dtype=torch.long)
    labels = torch.full((len(sides), width), -100, dtype=torch.long)
    for row, side in enumerate(sides):
        ids = side["input_ids"]
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
        labels[row, side["start"]:len(ids)] = torch.tensor(ids[side["start"]:])
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def sequence_log_probs(logits, labels):
    """Summed log-probabilities of each row's label tokens (the response), and how many there are."""
    import torch
    targets = labels[:, 1:]
    mask = targets != -100
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    picked = torch.gather(log_probs, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * mask).sum(-1), mask.sum(-1)


def reward_pair_losses(chosen, rejected):
    """Per-pair -log sigmoid(r_c - r_r), and the margins r_c - r_r."""
    import torch
    margin = chosen - rejected
    return torch.nn.functional.softplus(-margin), margin


def preference_pair_losses(policy_chosen, policy_rejected, reference_chosen, reference_rejected,
                           chosen_tokens, rejected_tokens, beta, loss, label_smoothing):
    """Per-pair DPO / cDPO / IPO losses and implicit reward margins, as the embedded trainer computes them
    (src/training/embedded/objectives/preference-objective.ts)."""
    import torch
    softplus = torch.nn.functional.softplus
    if loss == "ipo":
        chosen = (policy_chosen - reference_chosen) / chosen_tokens
        rejected = (policy_rejected - reference_rejected) / rejected_tokens
        h = chosen - rejected
        return (h - 1 / (2 * beta)) ** 2, beta * h
    h = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    return (1 - label_smoothing) * softplus(-h) + label_smoothing * softplus(h), h


def even_shards(count, processes, rank):
    """Indices 0..count-1 dealt round-robin to processes, each list padded (repeating its first index) to the same
    length, so every process runs the same number of forwards (collectives under ZeRO-3 need that)."""
    mine = list(range(rank, count, processes))
    length = -(-count // processes)
    return mine + [mine[0] if mine else 0] * (length - len(mine)), len(mine)


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, get_scheduler
    except ImportError as error:
        emit("error", message=f"missing Python package: {error.name} (pip install torch transformers peft accelerate)")
        return 2

    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation)
    main_process = accelerator.is_main_process
    set_seed(args.seed)
    reward = args.kind == "reward"

    try:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        items, dropped = tokenize_pairs(tokenizer, read_pairs(args.data), args.cutoff_len, args.overlong)
        if not items:
            raise ValueError(f"{args.data}: no usable pairs ({dropped} dropped: empty responses or too long)")
        held_out = []
        if args.eval_data:
            held_out, _ = tokenize_pairs(tokenizer, read_pairs(args.eval_data), args.cutoff_len, args.overlong,
                                         "held-out pair")
        for path in (args.init_adapter, None if args.reference in ("init", "base") else args.reference):
            if path is not None and not os.path.isfile(os.path.join(path, "adapter_config.json")):
                raise ValueError(f"{path} is not a PEFT adapter folder (no adapter_config.json)")
    except ValueError as error:
        if main_process:
            emit("error", message=str(error))
        return 1
    if dropped and main_process:
        print(f"dropped {dropped} pairs (an empty response, or longer than --cutoff-len)", file=sys.stderr)
    every_sequence = [side["input_ids"] for item in items + held_out for side in (item["chosen"], item["rejected"])]
    pad_id = free_pad_id(every_sequence, tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                         else tokenizer.eos_token_id)

    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    deepspeed_plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    deepspeed = deepspeed_plugin is not None
    if args.dtype == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not fsdp
        dtype = torch.bfloat16 if bf16 else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    import transformers
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    dtype_argument = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    if reward:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=1,
                                                                   **{dtype_argument: dtype})
        model.config.pad_token_id = pad_id
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model, **{dtype_argument: dtype})
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": not fsdp})
        model.enable_input_require_grads()

    if args.init_adapter:
        model = PeftModel.from_pretrained(model, args.init_adapter, is_trainable=True)
    else:
        config = LoraConfig(
            r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
            target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()], bias="none",
            task_type="SEQ_CLS" if reward else "CAUSAL_LM", modules_to_save=["score"] if reward else None)
        try:
            model = get_peft_model(model, config, autocast_adapter_dtype=not deepspeed)
        except TypeError:  # peft < 0.12
            model = get_peft_model(model, config)
    if not deepspeed and not fsdp:
        # Trainable weights in float32 (LoRA and the head): on a bf16 base, bf16 updates of small steps round away.
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
    if reward:
        # The head's input is the (bf16) hidden state; the head may be float32: cast its input to its dtype.
        head = [module for name, module in model.named_modules() if name.endswith("score.modules_to_save.default")
                or (name.endswith(".score") and isinstance(module, torch.nn.Linear))]
        for module in head:
            module.register_forward_pre_hook(lambda module, inputs: (inputs[0].to(module.weight.dtype),))
    reference_adapter = None
    if not reward and args.reference not in ("init", "base"):
        reference_adapter = "reference"
        model.load_adapter(args.reference, adapter_name=reference_adapter, is_trainable=False)
        model.set_adapter("default")

    processes = accelerator.num_processes
    window = processes * args.gradient_accumulation

    def epoch_batches(epoch):
        batches = bucketed_pairs(items, args.batch_size, args.seed + epoch)
        return batches + [batches[i % len(batches)] for i in range((-len(batches)) % window)]

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay,
                                  betas=(0.9, 0.999), eps=1e-8)
    if deepspeed:
        deepspeed_settings(deepspeed_plugin.deepspeed_config, args.batch_size, window, args.max_grad_norm)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    device = accelerator.device

    def forward(batch):
        """Rewards (reward kind) or summed response log-probs and their token counts (preference), chosen rows
        first then rejected rows."""
        tensors = {key: value.to(device) for key, value in collate_sides(batch, pad_id).items()}
        outputs = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"])
        if reward:
            return outputs.logits[:, 0].float(), None
        logits = outputs.logits
        return sequence_log_probs(logits, tensors["labels"])

    def reference_log_probs(pairs):
        """[len(pairs), 2] reference log-probs (chosen, rejected), each process computing its share."""
        table = torch.zeros((len(pairs), 2), dtype=torch.float64, device=device)
        indices, real = even_shards(len(pairs), processes, accelerator.process_index)
        model.eval()
        with torch.no_grad():
            for s in range(0, len(indices), args.batch_size):
                chunk = indices[s:s + args.batch_size]
                if reference_adapter:
                    unwrapped.set_adapter(reference_adapter)
                    values, _ = forward([pairs[i] for i in chunk])
                    unwrapped.set_adapter("default")
                elif args.reference == "base" or (args.reference == "init" and not args.init_adapter):
                    with unwrapped.disable_adapter():
                        values, _ = forward([pairs[i] for i in chunk])
                else:  # the starting adapter, before any update
                    values, _ = forward([pairs[i] for i in chunk])
                n = len(chunk)
                for k, i in enumerate(chunk):
                    if s + k < real:
                        table[i, 0], table[i, 1] = values[k].double(), values[n + k].double()
        model.train()
        return accelerator.reduce(table, reduction="sum")

    def pair_losses(batch, values, counts, reference):
        n = len(batch)
        if reward:
            return reward_pair_losses(values[:n], values[n:])
        rows = torch.tensor([item["position"] for item in batch], device=device)
        ref = reference[rows].to(values.dtype)
        return preference_pair_losses(values[:n], values[n:], ref[:, 0], ref[:, 1], counts[:n], counts[n:],
                                      args.beta, args.loss, args.label_smoothing)

    for position, item in enumerate(items):
        item["position"] = position
    for position, item in enumerate(held_out):
        item["position"] = position
    reference = held_reference = None
    if not reward:
        reference = reference_log_probs(items)
        if held_out:
            held_reference = reference_log_probs(held_out)

    def evaluate(step, total_steps):
        """Loss, accuracy and margin over the held-out pairs (every process evaluating its share)."""
        indices, real = even_shards(len(held_out), processes, accelerator.process_index)
        sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct, margin, pairs
        model.eval()
        with torch.no_grad():
            for s in range(0, len(indices), args.batch_size):
                chunk = [held_out[i] for i in indices[s:s + args.batch_size]]
                values, counts = forward(chunk)
                losses, margins = pair_losses(chunk, values, counts, held_reference)
                keep = torch.tensor([s + k < real for k in range(len(chunk))], device=device)
                sums += torch.stack([(losses * keep).sum(), ((margins > 0) & keep).sum(), (margins * keep).sum(),
                                     keep.sum()]).double()
        model.train()
        sums = accelerator.reduce(sums, reduction="sum")
        pairs = max(1.0, float(sums[3]))
        if main_process:
            emit("train-eval", step=step, total_steps=total_steps, loss=float(sums[0]) / pairs,
                 accuracy=float(sums[1]) / pairs, margin=float(sums[2]) / pairs, examples=int(sums[3]))

    steps_per_epoch = max(1, len(epoch_batches(0)[accelerator.process_index::processes]) // args.gradient_accumulation)
    total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(steps_per_epoch * args.epochs))
    scheduler = get_scheduler("constant_with_warmup" if args.schedule == "constant" else args.schedule,
                              optimizer=optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps)
    if main_process:
        emit("train-start", total_steps=total_steps, examples=len(items), processes=processes,
             trainable_parameters=sum(p.numel() for p in trainable), pad_id=pad_id)
    if held_out:
        evaluate(0, total_steps)

    model.train()
    step, epoch = 0, 0
    final_loss = float("nan")
    started = time.perf_counter()
    while step < total_steps:
        all_batches = epoch_batches(epoch)
        mine = all_batches[accelerator.process_index::processes]
        for start in range(0, len(mine) - len(mine) % args.gradient_accumulation, args.gradient_accumulation):
            # The step's loss is the mean over every pair of its window (all processes, all micro-batches).
            window_batches = all_batches[start * processes:(start + args.gradient_accumulation) * processes]
            window_pairs = sum(len(batch) for batch in window_batches)
            scale = backward_scale(window_pairs, args.gradient_accumulation, processes)
            sums = torch.zeros(3, device=device)  # loss, correct, margin
            tokens_seen = 0
            grad_norm = None
            for micro_batch in mine[start:start + args.gradient_accumulation]:
                with accelerator.accumulate(model):
                    values, counts = forward(micro_batch)
                    losses, margins = pair_losses(micro_batch, values, counts, reference)
                    accelerator.backward(losses.sum() * scale)
                    sums += torch.stack([losses.sum(), (margins > 0).sum(), margins.sum()]).detach().float()
                    tokens_seen += sum(pair_length(item) for item in micro_batch)
                    if accelerator.sync_gradients and args.max_grad_norm > 0 and not deepspeed:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            step += 1
            sums = accelerator.reduce(sums, reduction="sum")
            tokens = int(accelerator.reduce(torch.tensor(tokens_seen, device=device), reduction="sum"))
            if deepspeed and hasattr(model, "get_global_grad_norm"):
                grad_norm = model.get_global_grad_norm()
            elapsed = time.perf_counter() - started
            final_loss = float(sums[0]) / window_pairs
            if main_process:
                emit("train-step", step=step, total_steps=total_steps, loss=final_loss, lr=scheduler.get_last_lr()[0],
                     grad_norm=None if grad_norm is None else float(grad_norm), tokens=tokens,
                     tokens_per_second=tokens / elapsed if elapsed > 0 else None,
                     accuracy=float(sums[1]) / window_pairs, margin=float(sums[2]) / window_pairs)
            started = time.perf_counter()
            if held_out and (step == total_steps or (args.eval_every > 0 and step % args.eval_every == 0)):
                evaluate(step, total_steps)
            if step >= total_steps:
                break
        epoch += 1

    accelerator.wait_for_everyone()
    state = trainable_state_dict(accelerator, model, deepspeed, fsdp)
    if main_process:
        # Only the trained adapter: a reference adapter loaded beside it is not part of the result.
        unwrapped.save_pretrained(args.output, state_dict=state, safe_serialization=True, selected_adapters=["default"])
        if reward:
            probe = tokenizer("a", add_special_tokens=True)["input_ids"]
            info = {"hidden_size": unwrapped.config.hidden_size,
                    "adds_bos": tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id],
                    "pad_token_id": pad_id}
            with open(os.path.join(args.output, REWARD_INFO_FILE), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=2)
        emit("train-end", steps=step, final_loss=final_loss, output=os.path.abspath(args.output))
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
