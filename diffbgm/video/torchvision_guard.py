"""Keep a torchvision that cannot work from breaking transformers (CLIP, the mood text).

transformers imports torchvision whenever the package is installed (`is_torchvision_available`
looks only at its presence), e.g. in `transformers.image_utils`, which `CLIPModel` and
sentence-transformers pull in. PyPI's torchvision 0.28.0 Linux wheel is built against CUDA torch
(version `0.28.0+cu130`; its `_C.so` needs libtorch_cuda.so); next to the CPU torch its import
fails, and with it `from transformers import CLIPModel` (measured here). A torchvision made for
another torch release fails the same way.

So, before the first import of transformers, sentence-transformers or open_clip, the package's
files are read (never imported): when its build or release does not fit the torch in use, the
name is marked absent in `sys.modules`; transformers then sees no torchvision (nothing of ours
needs it: images are prepared by `semantics.clip_pixels`), and open_clip fails to import, which
its loader turns into the picture-statistics fallback. A fitting torchvision is left alone.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
import sys
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

log = logging.getLogger(__name__)

_VERSION_LINE = re.compile(r"""^__version__\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)


def torchvision_mismatch(
    torchvision_version: str,
    torch_requirements: list[str],
    torch_version: str,
    torch_cuda: str | None,
    torch_hip: str | None = None,
) -> str | None:
    """Why a torchvision build cannot load next to this torch, or None when it fits.

    `torchvision_version` is the build's own version (`0.28.0+cu130`, `0.28.0+cpu`, `0.28.0`);
    `torch_requirements` its `Requires-Dist` lines (those naming torch count); `torch_cuda` /
    `torch_hip` are `torch.version.cuda` / `.hip` (None for a CPU build)."""
    local = torchvision_version.partition("+")[2].lower()
    if local.startswith("cu") and torch_cuda is None:
        return f"torchvision {torchvision_version} is a CUDA build and torch {torch_version} is not"
    if local.startswith("rocm") and torch_hip is None:
        return f"torchvision {torchvision_version} is a ROCm build and torch {torch_version} is not"
    try:
        installed = Version(torch_version)
    except InvalidVersion:
        return None
    for line in torch_requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        fits = requirement.specifier.contains(installed, prereleases=True)
        if requirement.name == "torch" and requirement.marker is None and not fits:
            return (
                f"torchvision {torchvision_version} needs torch{requirement.specifier}, "
                f"this is torch {torch_version}"
            )
    return None


def _installed_torchvision() -> tuple[str, list[str]] | None:
    """(the build's version, its torch requirements) read from the installed files, or None."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    found = _VERSION_LINE.search(version_file.read_text()) if version_file.is_file() else None
    try:  # a source tree on the path has no distribution metadata: judge by version.py alone
        requirements = importlib.metadata.requires("torchvision") or []
        version = found.group(1) if found else importlib.metadata.version("torchvision")
    except importlib.metadata.PackageNotFoundError:
        requirements, version = [], found.group(1) if found else ""
    return (version, requirements) if version else None


def hide_unusable_torchvision() -> str | None:
    """Mark an installed torchvision that cannot load next to this torch as absent, so that
    transformers does not import it; returns why it was hidden (logged once), else None.
    Call before importing transformers, sentence-transformers or open_clip."""
    if "torchvision" in sys.modules:  # imported already (so it loads) or hidden already
        return None
    installed = _installed_torchvision()
    if installed is None:
        return None
    import torch

    reason = torchvision_mismatch(
        installed[0],
        installed[1],
        torch.__version__,
        torch.version.cuda,
        getattr(torch.version, "hip", None),
    )
    if reason is not None:
        sys.modules["torchvision"] = None  # type: ignore[assignment]  # import -> ImportError
        log.warning("torchvision is installed but cannot load (%s); ignoring it", reason)
    return reason
