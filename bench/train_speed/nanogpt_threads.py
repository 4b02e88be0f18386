# nanoGPT config overlay: set torch's thread count explicitly (LAKELM_BENCH_THREADS, default 1).
#
# Not a module of this project: compare_nanogpt.py passes this file's absolute path to nanoGPT's
# train.py as an extra config file on every run; nanoGPT's configurator exec()s it inside train.py's
# globals before the model is built. Our side calls torch.set_num_threads with the same number
# (bench_shakespeare_char.py --threads). The line it prints goes into the run's stdout.log.
import os as _os

import torch as _torch

_torch.set_num_threads(int(_os.environ.get("LAKELM_BENCH_THREADS", "1")))
print(f"lakelm-bench: torch threads = {_torch.get_num_threads()}", flush=True)
