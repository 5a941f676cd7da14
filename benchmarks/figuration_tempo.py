"""How figured POP909 songs are at each tempo: the line the app's figuration comes from.

    python benchmarks/figuration_tempo.py [--data data_cache/pop909]

The figuration of a song is the share of its onsets on the odd 16ths (`diffbgm.metrics.
odd_16th_share`). Training songs tell the network their own; the app has no song, so it tells
the share typical of the plan's tempo, `diffbgm.controls.typical_figuration`. This fits that
line by least squares on the training songs (share against `tempo_feature`, log2 of the tempo
over 90 BPM), prints it beside the constants the app uses, how well it predicts the validation
songs, and the median share by tempo band.
"""

from __future__ import annotations

import argparse

import numpy as np

from diffbgm.controls import (
    FIGURATION_AT_CENTRE,
    FIGURATION_PER_OCTAVE,
    tempo_feature,
    typical_figuration,
)
from trainer.dataset import load_split

TEMPO_BANDS = ((0.0, 66.0), (66.0, 76.0), (76.0, 90.0), (90.0, 400.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data_cache/pop909")
    args = parser.parse_args()
    for split in ("train", "valid"):
        songs = load_split(args.data, split)
        tempo = np.array([song.tempo_bpm for song in songs])
        share = np.array([song.figuration for song in songs])
        if split == "train":
            slope, centre = np.polyfit([tempo_feature(bpm) for bpm in tempo], share, 1)
            print(
                f"fit on {len(songs)} training songs: share = {centre:.3f} {slope:+.3f} * "
                f"log2(tempo / 90)  (the app: {FIGURATION_AT_CENTRE} {FIGURATION_PER_OCTAVE:+} "
                "* ...)"
            )
        typical = np.array([typical_figuration(bpm) for bpm in tempo])
        r = np.corrcoef(typical, share)[0, 1]
        print(
            f"{split}: {len(songs)} songs, r(typical, own) = {r:.2f}, "
            f"mean |typical - own| = {np.abs(typical - share).mean():.3f}"
        )
        for low, high in TEMPO_BANDS:
            band = (tempo >= low) & (tempo < high)
            if band.any():
                print(
                    f"  {low:g}-{high:g} BPM: {int(band.sum())} songs, median share "
                    f"{np.median(share[band]):.3f}, typical {np.median(typical[band]):.3f}"
                )


if __name__ == "__main__":
    main()
