"""Agreement of diffbgm.musdr_si with MusDr's own test data (not shipped here).

    python benchmarks/musdr_agreement.py PATH_TO_MUSDR_CHECKOUT

For each of MusDr's five test pieces (musdr/testdata): (1) our fitness scape plot of *their*
SSM against *their* scape plot (same computation: should agree exactly); (2) our SSM of their
audio (mp3 decoded and resampled to 22 050 Hz mono by PyAV, where they used librosa) against
their SSM, and SI short/mid/long from both.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from diffbgm.musdr_si import (
    SAMPLE_RATE,
    chroma_10hz,
    scape_plot,
    self_similarity,
    smooth_downsample,
    structureness_from_ssm,
)


def decode_mono(path: Path) -> np.ndarray:
    """An audio file as mono float samples at 22 050 Hz."""
    chunks = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray()[0] for out in resampler.resample(frame)]
        chunks += [out.to_ndarray()[0] for out in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("musdr", type=Path, help="a checkout of github.com/slSeanWU/MusDr")
    args = parser.parse_args()
    data = args.musdr / "musdr" / "testdata"
    print("| piece | frames | plot from their SSM: max abs diff | SSM from audio: mean abs diff "
          "| SI short / mid / long (theirs) | (ours, from audio) | seconds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for audio in sorted((data / "audio").glob("*.mp3")):
        started = time.perf_counter()
        theirs = np.load(data / "ssm" / f"{audio.stem}_ssm.npy")
        their_plot = np.load(data / "scplot" / f"{audio.stem}_fitness.npy")
        plot_diff = float(np.abs(scape_plot(theirs) - their_plot).max())
        ours = self_similarity(smooth_downsample(chroma_10hz(decode_mono(audio))))
        n = min(ours.shape[0], theirs.shape[0])
        ssm_diff = float(np.abs(ours[:n, :n] - theirs[:n, :n]).mean())
        si_theirs = structureness_from_ssm(theirs)
        si_ours = structureness_from_ssm(ours)
        print(
            f"| {audio.stem} | {theirs.shape[0]} | {plot_diff:.1e} | {ssm_diff:.4f} | "
            + " / ".join(f"{si_theirs[k]:.4f}" for k in si_theirs)
            + " | "
            + " / ".join(f"{si_ours[k]:.4f}" for k in si_ours)
            + f" | {time.perf_counter() - started:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
