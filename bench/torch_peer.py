"""PyTorch peer of the clipfreeze benchmark (bench/run.ts runs it).

Builds the CLIP ViT image tower (the architecture of openai/CLIP clip/model.py: patch
embedding, class token, positions, pre-LN, residual blocks with QuickGELU, post-LN of the
class token, projection) with random weights, and times one task with the same shapes,
micro-batches and optimiser as bench/task.ts. Prints one JSON object on stdout.

    OMP_WAIT_POLICY=PASSIVE python3 bench/torch_peer.py --task forward --batch 8
    python3 bench/torch_peer.py --task train --plan frozen8 --batch-size 32 --micro-batch-size 4

Without OMP_WAIT_POLICY=PASSIVE, torch's OpenMP threads busy-wait between operations and
the benchmark runs 2-3x slower on a 2-core machine, so this script sets it when unset.
"""

import argparse
import json
import os
import resource
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Debian's torch calls the system BLAS for linear layers. With OpenBLAS (libopenblas0-pthread)
# it runs its own thread pool, sized here like torch's; the reference BLAS is 20x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")

import torch  # noqa: E402  (imported after OMP_WAIT_POLICY is set)
from torch import nn  # noqa: E402

# Geometry of the clipfreeze presets (lib/clip/config.ts). 'tiny' is the smoke-test shape.
PRESETS = {
    "ViT-B/32": dict(image_size=224, patch_size=32, width=768, layers=12, heads=12, embed_dim=512),
    "tiny": dict(image_size=32, patch_size=8, width=64, layers=4, heads=4, embed_dim=32),
}
FINDINGS = 14


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width * 4), QuickGELU(), nn.Linear(width * 4, width))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):  # x: [T, B, W], as in clip/model.py
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class VisionTower(nn.Module):
    def __init__(self, image_size, patch_size, width, layers, heads, embed_dim):
        super().__init__()
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def embed(self, pixels):
        x = self.conv1(pixels).flatten(2).transpose(1, 2)  # [B, P, W]
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding
        return self.ln_pre(x).permute(1, 0, 2)  # [T, B, W]

    def head(self, x):
        return self.ln_post(x[0]) @ self.proj  # class token -> [B, E]

    def forward(self, pixels):
        x = self.embed(pixels)
        for block in self.resblocks:
            x = block(x)
        return self.head(x)


def blas_library():
    """Returns the BLAS library this process loaded (Debian's torch links the system libblas.so.3)."""
    torch.ones(2, 2) @ torch.ones(2, 2)
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "blas" in line.lower() and "/" in line}
    return ", ".join(sorted(paths)) or "none loaded"


def peak_rss_bytes():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_forward(model, args, size):
    pixels = torch.randn(args.batch, 3, size, size)
    with torch.inference_mode():
        model(pixels)  # warm-up: first-call allocations and kernel selection
        started = time.perf_counter()
        for _ in range(args.repeats):
            model(pixels)
        seconds = (time.perf_counter() - started) / args.repeats
    return {"msPerImage": 1000 * seconds / args.batch, "imagesPerSecond": args.batch / seconds}


def trained_blocks(plan, layers):
    """Returns the index of the first trained block (layers = none, only the head trains)."""
    if plan == "full":
        return 0
    if plan == "frozen8":
        return round(layers * 8 / 12)  # 8 of ViT-B/32's 12 blocks; 3 of the smoke shape's 4
    if plan == "head":
        return layers
    raise SystemExit(f"Invalid --plan {plan!r}: expected full, frozen8 or head.")


def run_train(model, args, size):
    layers = len(model.resblocks)
    first = trained_blocks(args.plan, layers)
    head = nn.Linear(model.proj.shape[1], FINDINGS)

    # Frozen units get requires_grad=False, as variable.trainable = false in clipfreeze.
    for p in model.parameters():
        p.requires_grad_(False)
    if args.plan == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif args.plan == "frozen8":
        for block in model.resblocks[first:]:
            for p in block.parameters():
                p.requires_grad_(True)
        for p in [model.ln_post.weight, model.ln_post.bias, model.proj]:
            p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.1)
    loss_fn = nn.BCEWithLogitsLoss()
    micro_batches = args.batch_size // args.micro_batch_size
    generator = torch.Generator().manual_seed(0)

    def micro_step():
        pixels = torch.randn(args.micro_batch_size, 3, size, size, generator=generator)
        labels = (torch.rand(args.micro_batch_size, FINDINGS, generator=generator) > 0.8).float()
        # The frozen prefix runs without autograd, like clipfreeze's runPrefix.
        with torch.no_grad():
            x = model.embed(pixels) if first > 0 else None
            for block in model.resblocks[:first]:
                x = block(x)
        x = model.embed(pixels) if first == 0 else x
        for block in model.resblocks[first:]:
            x = block(x)
        if args.plan == "head":
            with torch.no_grad():
                features = model.head(x)
        else:
            features = model.head(x)
        loss = loss_fn(head(features), labels) / micro_batches
        loss.backward()
        return loss.item()

    def optimiser_step():
        for _ in range(micro_batches):
            micro_step()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    micro_step()  # warm-up micro-batch, not timed
    optimizer.zero_grad(set_to_none=True)
    started = time.perf_counter()
    for _ in range(args.steps):
        optimiser_step()
    seconds = (time.perf_counter() - started) / args.steps
    trainable = sum(p.numel() for p in params)
    return {
        "msPerImage": 1000 * seconds / args.batch_size,
        "imagesPerSecond": args.batch_size / seconds,
        "trainableParams": trainable,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=["forward", "train"], required=True)
    parser.add_argument("--model", choices=sorted(PRESETS), default="ViT-B/32")
    parser.add_argument("--batch", type=int, default=8, help="forward: images per pass")
    parser.add_argument("--repeats", type=int, default=3, help="forward: timed passes")
    parser.add_argument("--plan", default="full", help="train: full, frozen8 or head")
    parser.add_argument("--batch-size", type=int, default=32, help="train: images per optimiser step")
    parser.add_argument("--micro-batch-size", type=int, default=4, help="train: images per forward/backward")
    parser.add_argument("--steps", type=int, default=1, help="train: timed optimiser steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.batch_size % args.micro_batch_size != 0:
        raise SystemExit(f"Invalid --micro-batch-size {args.micro_batch_size}: it must divide --batch-size {args.batch_size}.")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    geometry = PRESETS[args.model]
    model = VisionTower(**geometry)
    size = geometry["image_size"]
    result = run_forward(model, args, size) if args.task == "forward" else run_train(model, args, size)
    result.update(
        {
            "peakRssBytes": peak_rss_bytes(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "ompWaitPolicy": os.environ.get("OMP_WAIT_POLICY"),
            "blas": blas_library(),
        }
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
