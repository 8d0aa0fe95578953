#!/usr/bin/env python3
"""The competitor, measured the way `ddp-train bench` measures: PyTorch DDP (gloo, one thread per
rank) on random data of MNIST's shape, per-rank batch 64, samples/s over the timed steps.

    mpirun -np 2 /usr/bin/python3 Scripts/torch-bench.py --model cnn --optimizer adam
    mpirun -np 2 /usr/bin/python3 Scripts/torch-bench.py --model mlp

Models: `mlp` (784-512-512-10, ddp-train's default) and `cnn` (pytorch/examples' MNIST net, as
ddp-train's `--model cnn`). Needs torch (Debian: apt-get install python3-torch); prints one line.
"""
import argparse
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn


def model(name):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.25),
                         nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(1)
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29511")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    net = nn.parallel.DistributedDataParallel(model(a.model))
    opt = torch.optim.Adam(net.parameters(), 1e-3) if a.optimizer == "adam" else torch.optim.SGD(net.parameters(), 0.01, momentum=0.9)
    x, y = torch.randn(a.batch_size, 1, 28, 28), torch.randint(0, 10, (a.batch_size,))
    loss = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss(net(x), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    dist.barrier()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    dist.barrier()
    dt = time.perf_counter() - t
    if rank == 0:
        print(f"torch {torch.__version__} DDP gloo, {world} rank(s), model {a.model}, {a.optimizer}, per-rank batch {a.batch_size}: "
              f"{a.steps * a.batch_size * world / dt:.0f} samples/s ({dt / a.steps * 1000:.1f} ms/step)")


if __name__ == "__main__":
    main()
