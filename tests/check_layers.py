#!/usr/bin/env python3
"""The floors of the library (ARCHITECTURE.md) and who may include whom.

Fails when a library source includes a header of a floor above its own, includes a private
header (not named vn_*.h) of another folder, or when a program under tests/, bench/ or
examples/ includes a private library header: tests reach internals only through the
documented test-only headers named vn_testing.h (autograd/, io/, data/)."""
import os
import re
import sys

FLOORS = {'base': 0, 'io': 1, 'autograd': 2, 'layers': 3, 'optim': 3, 'data': 3,
          'models': 4, 'train': 5}
# Folders of one floor that may still use each other (same floor, declared here).
SAME_FLOOR_OK = set()
# Private headers another folder may use, with the reason.
PRIVATE_OK = {
    # The optimizer's fused CUDA step runs on the backend's stream with its kernels.
    ('optim/optim_cuda.c', 'autograd/cuda/cuda_impl.h'),
    ('optim/optim_cuda.c', 'autograd/cuda/optim_kernels.h'),
    # Parameters on a device step through the table of its backend module.
    ('optim/optim_impl.h', 'autograd/backend.h'),
}
# Private headers a program outside the library may use, with the reason.
PROGRAM_PRIVATE_OK = {
    # A stand-in backend module for the loader's tests implements the backend table.
    ('tests/cuda/fake_backend.c', 'autograd/backend.h'),
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_of(path):
    top = path.split('/')[0]
    return top if top in FLOORS else None


def main(root):
    problems = []
    for top in list(FLOORS) + ['tests', 'bench', 'examples']:
        for dp, _, files in os.walk(os.path.join(root, top)):
            for f in files:
                if not f.endswith(('.c', '.h', '.cu')):
                    continue
                p = os.path.relpath(os.path.join(dp, f), root)
                src = folder_of(p)
                for inc in INCLUDE.findall(open(os.path.join(root, p), errors='replace').read()):
                    dst = folder_of(inc)
                    if dst is None:
                        continue
                    private = not os.path.basename(inc).startswith('vn_')
                    if src is None:  # a program on top of the library
                        if private and (p, inc) not in PROGRAM_PRIVATE_OK:
                            problems.append(f'{p}: includes the private header {inc}')
                        continue
                    if FLOORS[dst] > FLOORS[src]:
                        problems.append(f'{p}: includes {inc} from the floor above ({dst} over {src})')
                    elif (FLOORS[dst] == FLOORS[src] and dst != src
                          and (src, dst) not in SAME_FLOOR_OK):
                        problems.append(f'{p}: includes {inc} from {dst}, a folder of the same floor')
                    if private and dst != src and (p, inc) not in PRIVATE_OK:
                        problems.append(f'{p}: includes {inc}, private to {dst}/')
    for line in problems:
        print(line)
    print(f'{len(problems)} problem(s)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else '.'))
