#!/usr/bin/python3
"""The PyTorch side of bench/compare_detect.sh: one YOLO11-VanillaNet training step (forward,
Ultralytics' assignment and loss, backward) of the model bench_detect times, in PyTorch 1.13
(Debian's python3-torch), on the same synthetic input and boxes:
vanillanet_5 backbone (act_learn 0.5), yolo11n scaling (depth 0.5, width 0.25, max 1024
channels), 80 classes, reg_max 16; tests/reference/yolo_ref.py's model and
gen_yolo_loss.py's loss.

    torch_detect.py IMGSZ BATCH STEPS THREADS [channels_last]

Prints one line per step (seconds, images/s, loss) and the process's peak RSS."""
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
from gen_yolo_loss import detection_loss  # noqa: E402
from yolo_ref import YoloVanilla  # noqa: E402


def main():
    imgsz, batch, steps, threads = (int(a) for a in sys.argv[1:5])
    cl = len(sys.argv) > 5 and sys.argv[5] == "channels_last"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    nc = 80
    m = YoloVanilla([512, 1024, 2048, 4096], [2, 2, 2], 3, nc, 0.5, 0.25, 1024, False, 16)
    m.model[0].change_act(0.5)
    m.train()
    # bench_detect's input: x[i] = ((i * 7919) % 255) / 255 - 0.5 over NHWC order.
    i = torch.arange(batch * imgsz * imgsz * 3, dtype=torch.int64)
    x = (((i * 7919) % 255).float() / 255.0 - 0.5).view(batch, imgsz, imgsz, 3).permute(0, 3, 1, 2)
    x = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    if cl:
        m = m.to(memory_format=torch.channels_last)
    gts = [(k // 2, k % nc, 0.1 * imgsz + k, 0.1 * imgsz, 0.5 * imgsz + k, 0.6 * imgsz)
           for k in range(batch * 2)]
    n_params = sum(p.numel() for p in m.parameters())
    print(f"PyTorch {torch.__version__}: YOLO11-VanillaNet ({n_params} parameters), imgsz {imgsz}, "
          f"batch {batch}, {threads} threads{', channels_last' if cl else ''}")
    for s in range(steps):
        m.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        ys = m(x)
        ps = [y.permute(0, 2, 3, 1) for y in ys]
        loss = detection_loss(ps, gts, batch, nc, 16)[0]
        loss.backward()
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        print(f"step {s}: {dt:.2f} s, {batch / dt:.3f} img/s, loss {float(loss):.4f}, "
              f"peak RSS {rss:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
