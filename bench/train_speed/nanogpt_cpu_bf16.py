# nanoGPT config overlay: bf16 autocast on CPU, the same way our trainer's precision="bf16" gets it.
#
# Not a module of this project: compare_nanogpt.py passes this file's absolute path to nanoGPT's
# train.py as an extra config file, after config/train_shakespeare_char.py, together with
# --dtype=bfloat16. nanoGPT's configurator exec()s config files inside train.py's globals, before
# train.py builds its autocast context:
#
#     ctx = nullcontext() if device_type == 'cpu' else torch.amp.autocast(device_type=device_type, dtype=ptdtype)
#
# On CPU that line always picks nullcontext(), so nanoGPT ignores --dtype there and trains in fp32.
# This overlay rebinds the name ``nullcontext`` in train.py's globals (only there: contextlib is not
# touched) to a factory of torch.autocast("cpu", bfloat16), so ``ctx`` becomes bf16 autocast and every
# ``with ctx:`` in train.py (the training forward and estimate_loss) runs under it, as ours does
# (forward and evaluation under autocast, backward outside it, fp32 master weights and AdamW state;
# CPU autocast computes cross-entropy in fp32 on both sides). --dtype=bfloat16 also keeps nanoGPT's
# GradScaler disabled, as it is for bf16 on CUDA. Nothing of nanoGPT is modified or copied.
#
# The first time the context is entered it prints a marker line; compare_nanogpt.py refuses a bf16
# nanoGPT run whose log lacks it.
import torch as _torch

LAKELM_BF16_MARKER = "lakelm-bench: nanoGPT ctx = torch.autocast('cpu', bfloat16)"


class _CpuBf16Autocast(_torch.autocast):
    _announced = False

    def __enter__(self):
        if not _CpuBf16Autocast._announced:
            _CpuBf16Autocast._announced = True
            print(LAKELM_BF16_MARKER, flush=True)
        return super().__enter__()


def nullcontext():
    return _CpuBf16Autocast(device_type="cpu", dtype=_torch.bfloat16)
