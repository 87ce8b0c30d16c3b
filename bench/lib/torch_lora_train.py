"""LoRA training speed of PyTorch on CPU, for bench/train.ts to compare with: the same LLaMA shape (RMSNorm, RoPE,
grouped-query causal attention, SwiGLU), frozen random F32 weights, LoRA of one rank on q, k, v and o, loss on the
completion tokens only, AdamW, forward + backward + step. Prints one JSON line: tokens/s over the steps after the
first (which warms up allocators and threads), wall-clock and per CPU-second × threads. Written for this benchmark; needs only torch (Debian: python3-torch).
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope(x, cos, sin):
    # Adjacent-pair rotation (llama.cpp's normal RoPE mode): (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class LoraLinear(torch.nn.Module):
    def __init__(self, n_in, n_out, rank, alpha):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in), requires_grad=False)
        self.a = torch.nn.Parameter(torch.randn(rank, n_in) / math.sqrt(n_in))
        self.b = torch.nn.Parameter(torch.zeros(n_out, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(x, self.weight) + self.scale * F.linear(F.linear(x, self.a), self.b)


def frozen(n_in, n_out):
    return torch.nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in), requires_grad=False)


class Block(torch.nn.Module):
    def __init__(self, dim, heads, kv_heads, ffn, rank, alpha):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        kv_dim = self.head_dim * kv_heads
        self.attn_norm = torch.nn.Parameter(torch.ones(dim), requires_grad=False)
        self.ffn_norm = torch.nn.Parameter(torch.ones(dim), requires_grad=False)
        self.q = LoraLinear(dim, dim, rank, alpha)
        self.k = LoraLinear(dim, kv_dim, rank, alpha)
        self.v = LoraLinear(dim, kv_dim, rank, alpha)
        self.o = LoraLinear(dim, dim, rank, alpha)
        self.gate, self.up, self.down = frozen(dim, ffn), frozen(dim, ffn), frozen(ffn, dim)

    def forward(self, x, cos, sin, mask):
        batch, seq, _ = x.shape
        h = rms_norm(x, self.attn_norm)
        q = self.q(h).view(batch, seq, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, seq, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        repeat = self.heads // self.kv_heads
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        attention = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(batch, seq, -1)
        x = x + self.o(attention)
        h = rms_norm(x, self.ffn_norm)
        return x + F.linear(F.silu(F.linear(h, self.gate)) * F.linear(h, self.up), self.down)


def main():
    parser = argparse.ArgumentParser()
    for name, default in [("layers", 8), ("dim", 768), ("heads", 12), ("kv-heads", 12), ("ffn", 2048),
                          ("vocab", 354), ("seq", 256), ("batch", 4), ("steps", 3), ("threads", 2), ("rank", 16)]:
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--tied", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    blocks = torch.nn.ModuleList(
        Block(args.dim, args.heads, args.kv_heads, args.ffn, args.rank, 2 * args.rank) for _ in range(args.layers))
    embedding = torch.randn(args.vocab, args.dim)
    output = embedding if args.tied else torch.randn(args.vocab, args.dim) / math.sqrt(args.dim)
    output_norm = torch.ones(args.dim)
    head_dim = args.dim // args.heads
    positions = torch.arange(args.seq - 1, dtype=torch.float32)
    angles = positions[:, None] * (10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    cos, sin = angles.cos(), angles.sin()
    mask = torch.full((args.seq - 1, args.seq - 1), float("-inf")).triu(1)
    lora = [p for p in blocks.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora, lr=1e-4)
    tokens = torch.randint(0, args.vocab, (args.batch, args.seq))
    # Loss on the completion only: the first quarter of each sequence is the prompt.
    labels = tokens[:, 1:].clone()
    labels[:, : args.seq // 4] = -100
    times = []
    cpu_times = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        cpu_start = time.process_time()
        x = embedding[tokens[:, :-1]]
        for block in blocks:
            x = block(x, cos, sin, mask)
        logits = F.linear(rms_norm(x, output_norm), output)
        loss = F.cross_entropy(logits.reshape(-1, args.vocab), labels.reshape(-1), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    measured = times[1:]
    step_tokens = args.batch * (args.seq - 1)
    # Tokens per CPU-second times threads: the rate with the cores to itself, when other processes share them.
    cpu_rate = step_tokens * len(measured) * args.threads / sum(cpu_times[1:])
    print(json.dumps({"tokens_per_second": step_tokens * len(measured) / sum(measured), "steps": len(measured),
                      "cpu_tokens_per_second": cpu_rate,
                      "step_tokens": step_tokens, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
