"""Write ``golden.safetensors`` from :mod:`cases` (run on purpose only; see that module's docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cases import CASES  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    tensors = {name: fn().contiguous() for name, fn in CASES.items()}
    save_file(tensors, str(HERE / "golden.safetensors"), metadata={"torch": torch.__version__})
    for name, t in tensors.items():
        print(f"{name}: {tuple(t.shape)} {t.dtype}")


if __name__ == "__main__":
    main()
