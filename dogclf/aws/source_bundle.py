"""`sourcedir.tar.gz` for the SageMaker PyTorch training container.

The container downloads `sagemaker_submit_directory`, unpacks it into /opt/ml/code and runs
`sagemaker_program` there (via torchrun when `sagemaker_torch_distributed_enabled`). The
bundle holds the part of the `dogclf` package the training core imports, plus a two-line
entry script. It is byte-for-byte deterministic (sorted entries, fixed mtimes, owners and
modes, gzip without a timestamp), so its hash names its S3 key and an unchanged source is
never uploaded twice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # .../dogclf
ENTRY_SCRIPT = "dogclf_train.py"
# What `dogclf.training.train` needs inside the container (no config, aws, commands).
BUNDLED = (
    "__init__.py",
    "errors.py",
    "training",
    "model",  # the network, preprocessing, and code/ of model.tar.gz
)


def entry_script(module: str) -> bytes:
    return (
        '"""SageMaker entry point written by `dogclf train-sagemaker`."""\n'
        "import runpy\n\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    ).encode()


@dataclass(frozen=True)
class SourceBundle:
    data: bytes
    files: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


def _sources(root: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    for entry in BUNDLED:
        path = root / entry
        if path.is_dir():
            found += [
                (f"dogclf/{p.relative_to(root).as_posix()}", p)
                for p in path.rglob("*.py")
                if "__pycache__" not in p.parts
            ]
        elif path.is_file():
            found.append((f"dogclf/{entry}", path))
    return sorted(found)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def build_bundle(module: str, root: Path = PACKAGE_ROOT) -> SourceBundle:
    raw = io.BytesIO()
    sources = _sources(root)
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, ENTRY_SCRIPT, entry_script(module))
        for name, path in sources:
            _add(tar, name, path.read_bytes())
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return SourceBundle(packed.getvalue(), (ENTRY_SCRIPT, *(n for n, _ in sources)))
