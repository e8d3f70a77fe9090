"""Turn a trained teacher checkpoint into the fp16 file shipped inside the package, and print its SHA-256 for
autokd.kd.teacher.SHIPPED.

    python tools/ship_teacher.py CKPT autokd/teachers/DATASET-ARCH.pt
"""

from __future__ import annotations

import io
import sys

import torch

from autokd.fsutil import write_atomic
from autokd.kd.teacher import file_sha256, load_checkpoint


def main(src: str, dst: str) -> None:
    ckpt = load_checkpoint(src)
    ckpt["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    ckpt["stored_as"] = "float16 (widened to float32 on load)"
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    write_atomic(dst, buf.getvalue())
    print(f"{dst}: {len(buf.getvalue()):,} bytes, sha256 {file_sha256(dst)}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
