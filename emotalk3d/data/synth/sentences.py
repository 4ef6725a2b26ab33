"""The sentences the synthetic dataset speaks, with a fixed train/validation/test split.

Written for this project (DESIGN.md section 4): 48 short English sentences of 4 to 10 words
(about 1.5 to 3.5 s of neutral speech), rich in bilabials (p, b, m: lip closures),
labiodentals (f, v), dental and sibilant fricatives, open vowels (father, hot, pie, now) and
rounded vowels (moon, boat, blue), so that every viseme class occurs often in every split.

The split is by sentence, so no test sentence is ever heard in training:
``s000``-``s039`` train (40), ``s040``-``s043`` val (4), ``s044``-``s047`` test (4).
Ids are stable: new sentences are appended with new ids, never renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Sentence:
    """One sentence: a stable id (``s000``), its text and its split."""

    id: str
    text: str
    split: str


_TEXTS: tuple[str, ...] = (
    # train: s000-s039
    "Bob made a big pot of maple soup.",
    "The father bought a hot pie at the market.",
    "Mum kept the map beside the blue lamp.",
    "Five brave wolves moved through the foggy valley.",
    "Please pass the pepper and the warm bread.",
    "Our boat floated past the bright harbor lights.",
    "Big bubbles burst above the bathtub.",
    "She shouted when the sharp knife slipped.",
    "Paul bought a purple umbrella for the beach.",
    "The moon rose over the quiet mountain pool.",
    "Maybe the baby wants more mashed potato.",
    "A thick fog rolled over the farm at dawn.",
    "Few people remember the mayor's famous speech.",
    "We watched the brown owl swoop above the barn.",
    "The boy played with a rubber ball in the park.",
    "Fresh plums and apples filled the basket.",
    "My brother fixed the broken bicycle pump.",
    "Jump over the puddle before the bus arrives.",
    "Violet paints vivid pictures of the ocean.",
    "The soup was much too hot to swallow.",
    "Father often walks along the calm blue shore.",
    "Put the empty box by the back door.",
    "Smooth pebbles shimmer beneath the shallow water.",
    "The bright morning sun warmed the cobblestones.",
    "Nobody knew why the old clock stopped.",
    "Bake a batch of plump blueberry muffins.",
    "The shop opens at nine on Monday mornings.",
    "His voice boomed across the empty hall.",
    "Cool water poured from the broken pipe.",
    "Mabel hummed a simple tune while baking.",
    "Autumn leaves blew past the open window.",
    "The pilot spotted a small boat far below.",
    "Grab the map and follow the muddy path.",
    "Bees buzz busily among the pink blossoms.",
    "A warm breeze moved the tall palm trees.",
    "Thomas thought the theater was rather boring.",
    "Please bring me the purple bowl from the cupboard.",
    "We ate fish and chips by the harbor.",
    "The puppy chewed my brand new boots.",
    "Moving boxes up the stairs made him tired.",
    # val: s040-s043
    "Every Friday we buy bread from the baker.",
    "The mob booed as the umpire walked off.",
    "A giant wave crashed upon the rocky beach.",
    "Pam opened a bottle of bubbly lemonade.",
    # test: s044-s047
    "The farmer's cows graze on the misty hills.",
    "Bring both maps to the meeting at noon.",
    "Mark bought a hot bowl of porridge.",
    "Five pale moths flew around the lamp.",
)

_SPLIT_SIZES = {"train": 40, "val": 4, "test": 4}


def _build() -> list[Sentence]:
    out: list[Sentence] = []
    i = 0
    for split in SPLITS:
        for _ in range(_SPLIT_SIZES[split]):
            out.append(Sentence(id=f"s{i:03d}", text=_TEXTS[i], split=split))
            i += 1
    assert i == len(_TEXTS), "every sentence belongs to exactly one split"
    return out


SENTENCES: list[Sentence] = _build()
"""All sentences in id order."""


def sentences(split: str | None = None) -> list[Sentence]:
    """The sentences of one split (``train``, ``val``, ``test``), or all of them for None.

    Raises:
        ValueError: ``split`` is not one of the three split names.
    """
    if split is None:
        return list(SENTENCES)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)} or None")
    return [s for s in SENTENCES if s.split == split]


def sentence(sentence_id: str) -> Sentence:
    """The sentence with id ``sentence_id`` (e.g. ``s007``).

    Raises:
        KeyError: No sentence has that id.
    """
    for s in SENTENCES:
        if s.id == sentence_id:
            return s
    raise KeyError(f"no sentence with id {sentence_id!r}; ids run from s000 to {SENTENCES[-1].id}")
