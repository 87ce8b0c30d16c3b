#!/usr/bin/env python3
"""LoRA supervised fine-tuning on GPUs for selfalign's `hf` trainer (src/training/hf/).

Reads selfalign's SFT JSONL ({"prompt": ..., "completion": ...} per line), trains a PEFT LoRA adapter on a
Hugging Face causal LM with the loss on the completion tokens only, and saves the adapter
(adapter_config.json + adapter_model.safetensors). Runs under `accelerate launch` (single GPU, multi-GPU, or
multi-node with DeepSpeed ZeRO-3 or FSDP; see python/configs/) or plain `python3` for one process.

Protocol with the TypeScript side: stdout carries one JSON object per line, each with an "event" field:
  {"event": "train-start", "total_steps": N, "examples": E, "processes": P}
  {"event": "train-step", "step": s, "total_steps": N, "loss": x, "lr": y, "grad_norm": g, "tokens": t,
   "tokens_per_second": r}
  {"event": "train-end", "steps": N, "final_loss": x, "output": "<adapter dir>"}
  {"event": "error", "message": "..."}   (then a non-zero exit)
Only the main process prints events; everything else goes to stderr.
"""

import argparse
import json
import math
import os
import random
import sys
import time


def emit(event, **fields):
    # JSON has no NaN/Infinity: a diverged loss is sent as null (the TS side reads it as NaN).
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in fields.items()}
    print(json.dumps({"event": event, **clean}, allow_nan=False), flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="Hugging Face model directory or hub id")
    p.add_argument("--data", required=True, help="SFT JSONL with prompt and completion fields")
    p.add_argument("--output", required=True, help="directory for the PEFT adapter")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=16)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj", help="comma-separated module names")
    p.add_argument("--learning-rate", type=float, default=4e-4)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps (0: epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per micro-batch per process")
    p.add_argument("--gradient-accumulation", type=int, default=1)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--schedule", choices=["cosine", "linear", "constant"], default="cosine")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    p.add_argument("--cutoff-len", type=int, default=2048)
    p.add_argument("--overlong", choices=["error", "truncate", "drop"], default="error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["auto", "bfloat16", "float16", "float32"], default="auto",
                   help="weights dtype; auto = bfloat16 on a GPU that supports it, else float32")
    p.add_argument("--gradient-checkpointing", action="store_true")
    return p.parse_args(argv)


def read_examples(path):
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not JSON ({error})") from None
            prompt, completion = record.get("prompt"), record.get("completion")
            if not isinstance(prompt, str) or not isinstance(completion, str):
                raise ValueError(f"{path}, line {number}: expected string fields prompt and completion")
            examples.append((prompt, completion))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def tokenize_example(tokenizer, prompt, completion, cutoff_len, overlong):
    """input_ids and labels for prompt + completion, labels -100 on the prompt.

    Boundary-safe: the prompt and the full text are tokenised separately and the prompt part is the longest
    common prefix of the two token lists, so a token that merges across the boundary counts as completion
    (it is predicted) instead of shifting every label by one.
    """
    full = tokenizer(prompt + completion, add_special_tokens=True)["input_ids"]
    alone = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    boundary = 0
    while boundary < min(len(full), len(alone)) and full[boundary] == alone[boundary]:
        boundary += 1
    if tokenizer.eos_token_id is not None and (not full or full[-1] != tokenizer.eos_token_id):
        full = full + [tokenizer.eos_token_id]
    if len(full) > cutoff_len:
        if overlong == "error":
            raise ValueError(
                f"an example has {len(full)} tokens, more than --cutoff-len {cutoff_len}; "
                "raise it, or pass --overlong truncate or drop")
        if overlong == "drop":
            return None
        full = full[:cutoff_len]
    labels = [-100] * min(boundary, len(full)) + full[boundary:]
    if all(label == -100 for label in labels[1:]):
        return None  # nothing to learn from (empty completion or truncated away; the first token is never predicted)
    return {"input_ids": full, "labels": labels}


def collate(batch, pad_id):
    import torch
    width = max(len(item["input_ids"]) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def length_bucketed(items, batch_size, seed):
    """Batches of similar length (less padding), in a seeded random order."""
    rng = random.Random(seed)
    order = sorted(range(len(items)), key=lambda i: (len(items[i]["input_ids"]), rng.random()))
    batches = [[items[i] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def deepspeed_settings(config, batch_size, window, max_grad_norm):
    """The DeepSpeed config values our loop needs, set before accelerator.prepare.

    With no prepared dataloader DeepSpeed cannot infer its batch sizes ("auto"), so they are stated. Clipping is
    DeepSpeed's own (`gradient_clipping`, 0 = off): under DeepSpeed accelerator.clip_grad_norm_ does not clip.
    """
    config["train_micro_batch_size_per_gpu"] = batch_size
    config["train_batch_size"] = batch_size * window
    config["gradient_clipping"] = max_grad_norm if max_grad_norm > 0 else 0.0
    return config


def label_tokens(labels):
    """Tokens a causal LM is scored on: labels after the one-position shift that isn't -100."""
    return sum(1 for row in labels for label in row[1:] if label != -100)


def backward_scale(window_tokens, gradient_accumulation, processes):
    """Factor turning a micro-batch's summed token loss into its share of the window's per-token mean.

    accelerator.backward divides by gradient_accumulation (DeepSpeed likewise) and the gradient all-reduce
    averages over processes, so loss_sum * scale adds up to sum(all token losses) / window_tokens: every token of
    the optimizer step weighs the same, however the tokens fall into micro-batches.
    """
    return gradient_accumulation * processes / max(1, window_tokens)


def trainable_state_dict(accelerator, model, deepspeed, fsdp):
    """The trainable (LoRA) weights in float32, gathered from shards without gathering the frozen base.

    DeepSpeed ZeRO-3: the engine's consolidated state dict with exclude_frozen_parameters (or, on DeepSpeed
    versions without it, a GatheredParameters of the trainable ones); FSDP: torch.distributed.checkpoint's
    full state dict with ignore_frozen_params. Every process must call this; only the main one gets the weights.
    """
    import torch
    if deepspeed:
        state = None
        try:
            state = model._zero3_consolidated_16bit_state_dict(exclude_frozen_parameters=True)
        except TypeError:
            import deepspeed as ds
            named = [(name, p) for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad]
            with ds.zero.GatheredParameters([p for _, p in named], modifier_rank=None):
                if accelerator.is_main_process:
                    state = {name: p.detach().to("cpu").clone() for name, p in named}
        except ValueError:
            # Not partitioned (ZeRO stage below 3): the trainable parameters are whole on every process.
            named = accelerator.unwrap_model(model).named_parameters()
            state = {name: p.detach().to("cpu") for name, p in named if p.requires_grad}
    elif fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        state = get_model_state_dict(model, options=options)
    else:
        named = accelerator.unwrap_model(model).named_parameters()
        state = {name: p.detach().to("cpu") for name, p in named if p.requires_grad}
    if not accelerator.is_main_process or state is None:
        return None
    return {name: tensor.to(torch.float32).contiguous() for name, tensor in state.items()}


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler
    except ImportError as error:
        emit("error", message=f"missing Python package: {error.name} (pip install torch transformers peft accelerate)")
        return 2

    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation)
    main_process = accelerator.is_main_process
    set_seed(args.seed)

    try:
        examples = read_examples(args.data)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        items = [tokenize_example(tokenizer, p, c, args.cutoff_len, args.overlong) for p, c in examples]
        items = [item for item in items if item is not None]
        if not items:
            raise ValueError("every example was dropped (too long, or empty completions)")
    except ValueError as error:
        if main_process:
            emit("error", message=str(error))
        return 1

    # FSDP flattens each wrapped block into one tensor of a single dtype, so under FSDP the weights stay float32
    # and bf16 comes from FSDP's mixed-precision policy (accelerate --mixed_precision bf16).
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    deepspeed_plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    deepspeed = deepspeed_plugin is not None
    if args.dtype == "auto":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not fsdp
        dtype = torch.bfloat16 if bf16 else torch.float32
    else:
        dtype = getattr(torch, args.dtype)
    # transformers 4.56 renamed torch_dtype to dtype (older versions would silently ignore `dtype`).
    import transformers
    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    dtype_argument = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    model = AutoModelForCausalLM.from_pretrained(args.model, **{dtype_argument: dtype})
    if args.gradient_checkpointing:
        # Re-entrant checkpointing re-runs the forward outside FSDP's hooks; the non-re-entrant kind works with it.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": not fsdp})
        model.enable_input_require_grads()
    config = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()],
        bias="none",
        task_type="CAUSAL_LM",
    )
    # Adapter dtype: without DeepSpeed, PEFT's default upcasts the LoRA weights to float32 on a bf16/fp16 base, so
    # the optimizer state and updates stay exact. DeepSpeed keeps every parameter in its engine's dtype (its
    # optimizer holds float32 master weights itself) and its ZeRO-3 collectives need one dtype for all of them:
    # float32 adapters on a bf16 base fail the first step ("output tensor must have the same type as input tensor"),
    # so under DeepSpeed the adapters keep the base's dtype. They are saved in float32 either way.
    try:
        model = get_peft_model(model, config, autocast_adapter_dtype=not deepspeed)
    except TypeError:  # peft < 0.12 has no autocast_adapter_dtype and leaves the adapters in the base dtype
        model = get_peft_model(model, config)
        if not deepspeed and not fsdp:
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.data = parameter.data.float()

    # Each process takes every P-th length-bucketed batch. The list is first padded (by repeating batches from its
    # start) to a multiple of P × gradient_accumulation, so every process runs the same number of micro-batches
    # and every optimizer step sees a full window: collectives never wait on a process that ran out of data.
    # (Sharding here instead of accelerator.prepare(dataloader) keeps variable-size batches and exact step counts.)
    processes = accelerator.num_processes
    window = processes * args.gradient_accumulation

    def epoch_batches(epoch):
        batches = length_bucketed(items, args.batch_size, args.seed + epoch)  # a new order every epoch
        return batches + [batches[i % len(batches)] for i in range((-len(batches)) % window)]

    def local_batches(epoch):
        return epoch_batches(epoch)[accelerator.process_index::processes]

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay,
                                  betas=(0.9, 0.999), eps=1e-8)
    if deepspeed:
        deepspeed_settings(deepspeed_plugin.deepspeed_config, args.batch_size, window, args.max_grad_norm)
    model, optimizer = accelerator.prepare(model, optimizer)

    steps_per_epoch = max(1, len(local_batches(0)) // args.gradient_accumulation)
    total_steps = args.max_steps if args.max_steps > 0 else max(1, math.ceil(steps_per_epoch * args.epochs))
    # Not passed to accelerator.prepare: a prepared scheduler steps once per process per call.
    scheduler = get_scheduler("constant_with_warmup" if args.schedule == "constant" else args.schedule,
                              optimizer=optimizer, num_warmup_steps=args.warmup_steps,
                              num_training_steps=total_steps)
    if main_process:
        emit("train-start", total_steps=total_steps, examples=len(items), processes=processes,
             trainable_parameters=sum(p.numel() for p in trainable))

    model.train()
    step = 0
    final_loss = float("nan")
    started = time.perf_counter()
    epoch = 0
    while step < total_steps:
        all_batches = epoch_batches(epoch)
        mine = all_batches[accelerator.process_index::processes]
        for start in range(0, len(mine) - len(mine) % args.gradient_accumulation, args.gradient_accumulation):
            # The loss of an optimizer step is the mean over every label token of its window (all processes,
            # all micro-batches), not a mean of per-micro-batch means. The window's token count is known from
            # the data, the same on every process, so no collective is needed for it.
            window_batches = all_batches[start * processes:(start + args.gradient_accumulation) * processes]
            window_tokens = sum(label_tokens([item["labels"] for item in batch]) for batch in window_batches)
            scale = backward_scale(window_tokens, args.gradient_accumulation, processes)
            loss_sum = torch.zeros((), device=accelerator.device)
            tokens_seen = 0
            grad_norm = None
            for micro_batch in mine[start:start + args.gradient_accumulation]:
                batch = {key: value.to(accelerator.device) for key, value in collate(micro_batch, pad_id).items()}
                scored = label_tokens([item["labels"] for item in micro_batch])
                with accelerator.accumulate(model):
                    loss = model(**batch).loss * scored  # the micro-batch's summed token loss
                    accelerator.backward(loss * scale)
                    loss_sum += loss.detach().float()
                    tokens_seen += int(batch["attention_mask"].sum())
                    if accelerator.sync_gradients and args.max_grad_norm > 0 and not deepspeed:
                        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            step += 1
            mean_loss = accelerator.reduce(loss_sum, reduction="sum").item() / max(1, window_tokens)
            tokens = int(accelerator.reduce(torch.tensor(tokens_seen, device=accelerator.device), reduction="sum"))
            if deepspeed and hasattr(model, "get_global_grad_norm"):
                grad_norm = model.get_global_grad_norm()
            elapsed = time.perf_counter() - started
            if main_process:
                emit("train-step", step=step, total_steps=total_steps, loss=mean_loss,
                     lr=scheduler.get_last_lr()[0],
                     grad_norm=None if grad_norm is None else float(grad_norm),
                     tokens=tokens, tokens_per_second=tokens / elapsed if elapsed > 0 else None)
            final_loss = mean_loss
            started = time.perf_counter()
            if step >= total_steps:
                break
        epoch += 1

    accelerator.wait_for_everyone()
    # Gathers the LoRA weights only: consolidating the whole model on rank 0 would need the base's full size in
    # host memory (130-260 GB at 65B) to keep a few MB.
    state = trainable_state_dict(accelerator, model, deepspeed, fsdp)
    if main_process:
        accelerator.unwrap_model(model).save_pretrained(args.output, state_dict=state, safe_serialization=True)
        emit("train-end", steps=step, final_loss=final_loss, output=os.path.abspath(args.output))
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
