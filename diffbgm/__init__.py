"""Diff-BGM: background music for a video, from a piano-roll diffusion model.

Heavy parts (torch, video decoding) are imported lazily so `import diffbgm` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from diffbgm.errors import DiffBGMError, VideoError

__all__ = ["Composer", "DiffBGMError", "VideoError", "__version__"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from diffbgm.pipeline import Composer


def __getattr__(name: str) -> Any:
    if name == "Composer":
        from diffbgm.pipeline import Composer

        return Composer
    raise AttributeError(name)
