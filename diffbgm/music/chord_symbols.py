"""Chord symbols as musicians write them (Am7, F#m7b5, Bbmaj7, C/E) -> Harte labels.

A user types a progression the way a lead sheet spells it; the planner and the model read
Harte labels (diffbgm.music.chords). `harte_label` converts one symbol, `parse_progression`
a whole progression of one chord per bar ("C G Am F", "| Dm7 | G7 | Cmaj7 | % |"). A symbol
that already is a Harte label ("A:min7", "N") passes through, checked.
"""

from __future__ import annotations

import re

from diffbgm.music.chords import ChordError, parse_chord

# Suffix after the root -> Harte quality (with extensions). Several spellings of one chord
# map to one label; lookups are exact, so "M7" (major seventh) and "m7" (minor) stay apart.
SUFFIX_QUALITIES: dict[str, str] = {
    "": "maj",
    "maj": "maj",
    "M": "maj",
    "m": "min",
    "min": "min",
    "-": "min",
    "mi": "min",
    "7": "7",
    "dom7": "7",
    "maj7": "maj7",
    "M7": "maj7",
    "ma7": "maj7",
    "Δ": "maj7",
    "Δ7": "maj7",
    "^7": "maj7",
    "m7": "min7",
    "min7": "min7",
    "-7": "min7",
    "mi7": "min7",
    "mmaj7": "minmaj7",
    "mM7": "minmaj7",
    "m(maj7)": "minmaj7",
    "minmaj7": "minmaj7",
    "-Δ7": "minmaj7",
    "dim": "dim",
    "°": "dim",
    "o": "dim",
    "dim7": "dim7",
    "°7": "dim7",
    "o7": "dim7",
    "m7b5": "hdim7",
    "m7(b5)": "hdim7",
    "min7b5": "hdim7",
    "-7b5": "hdim7",
    "ø": "hdim7",
    "ø7": "hdim7",
    "aug": "aug",
    "+": "aug",
    "#5": "aug",
    "aug7": "aug(b7)",
    "+7": "aug(b7)",
    "7#5": "aug(b7)",
    "7+5": "aug(b7)",
    "6": "maj6",
    "maj6": "maj6",
    "m6": "min6",
    "min6": "min6",
    "-6": "min6",
    "9": "9",
    "maj9": "maj9",
    "M9": "maj9",
    "Δ9": "maj9",
    "m9": "min9",
    "min9": "min9",
    "-9": "min9",
    "11": "11",
    "m11": "min11",
    "min11": "min11",
    "13": "13",
    "maj13": "maj13",
    "m13": "min13",
    "min13": "min13",
    "add9": "maj(9)",
    "add2": "maj(9)",
    "madd9": "min(9)",
    "m(add9)": "min(9)",
    "6/9": "maj6(9)",
    "69": "maj6(9)",
    "sus": "sus4",
    "sus4": "sus4",
    "sus2": "sus2",
    "7sus4": "sus4(b7)",
    "7sus": "sus4(b7)",
    "9sus4": "sus4(b7,9)",
    "7b9": "7(b9)",
    "7#9": "7(#9)",
    "7b5": "7(*5,b5)",
    "7(b5)": "7(*5,b5)",
    "7(b9)": "7(b9)",
    "7(#9)": "7(#9)",
    "7#11": "7(#11)",
    "7(#11)": "7(#11)",
    "9sus": "sus4(b7,9)",
    "(add9)": "maj(9)",
    "add(9)": "maj(9)",
    "mi7b5": "hdim7",
    "mi7(b5)": "hdim7",
    "5": "5",
    "1": "1",
}
# Other ways of writing the same signs, as keyboards and fonts give them.
SIGN_SPELLINGS = str.maketrans({"♯": "#", "♭": "b", "∆": "Δ", "º": "°", "Ø": "ø"})
# Suffix words matched in any case ("CMaj7", "CMIN"); "M" and "m" alone stay apart.
SUFFIX_WORDS = re.compile(r"maj|min|dim|aug|sus|add|dom", re.IGNORECASE)
NO_CHORD_SYMBOLS = frozenset({"N", "NC", "N.C.", "N.C"})
REPEAT_BAR = "%"  # a lead sheet's repeat-the-previous-bar sign
SYMBOL_PATTERN = re.compile(
    r"^(?P<root>[A-Ga-g][#b♯♭]?)(?P<suffix>.*?)(?:/(?P<bass>[A-Ga-g][#b♯♭]?))?$"
)
EXAMPLES = "C, Am, F#m7, Bbmaj7, G7sus4, Dm7b5, C/E or a Harte label such as A:min7"


def _note(text: str) -> str:
    return text[0].upper() + text[1:]


def _quality(suffix: str) -> str | None:
    exact = SUFFIX_QUALITIES.get(suffix)
    if exact is not None:
        return exact
    return SUFFIX_QUALITIES.get(SUFFIX_WORDS.sub(lambda word: word[0].lower(), suffix))


def harte_label(symbol: str) -> str:
    """One chord symbol -> its Harte label; ChordError naming the symbol when it is none."""
    text = symbol.strip().translate(SIGN_SPELLINGS)
    if text.upper() in NO_CHORD_SYMBOLS:
        return "N"
    if ":" in text:  # already Harte: check it
        parse_chord(text)
        return text
    match = SYMBOL_PATTERN.match(text)
    quality = None if match is None else _quality(match["suffix"])
    if match is None or quality is None:
        raise ChordError(f"cannot read the chord {symbol!r}; write chords like {EXAMPLES}")
    if match["root"][0].islower() and not match["suffix"]:
        # some charts write minor chords in lower case: say which is meant
        raise ChordError(
            f"the chord {symbol!r} is ambiguous: write {_note(match['root'])} for the major "
            f"chord or {_note(match['root'])}m for the minor"
        )
    label = f"{_note(match['root'])}:{quality}"
    if match["bass"] is not None:
        label += f"/{_note(match['bass'])}"
    parse_chord(label)  # every table entry parses; this guards the bass spelling
    return label


def parse_progression(text: str) -> tuple[str, ...]:
    """A progression of one chord per bar -> Harte labels, one per bar.

    Chords are separated by spaces, commas or bar lines ("|"); "%" repeats the bar before.
    """
    labels: list[str] = []
    for symbol in re.split(r"[\s,|]+", text.strip()):
        if not symbol:
            continue
        if symbol == REPEAT_BAR:
            if not labels:
                raise ChordError("a progression cannot start with '%' (repeat the bar before)")
            labels.append(labels[-1])
        else:
            try:
                label = harte_label(symbol)
            except ChordError as exc:
                raise ChordError(f"bar {len(labels) + 1}: {exc}") from exc
            if label == "N":
                raise ChordError(
                    f"bar {len(labels) + 1}: every bar needs a chord ({symbol!r} is no chord)"
                )
            labels.append(label)
    return tuple(labels)
