"""Natural-language captions for SynthCaps attribute dicts: several templates and synonyms per attribute."""

from __future__ import annotations

import re

import numpy as np

NOUNS: dict[str, tuple[str, ...]] = {
    "beep": ("beep", "beeping tone", "electronic beep", "sine tone", "pure tone"),
    "buzzer": ("buzzer", "electric buzzer", "square-wave buzz", "harsh buzzer"),
    "bell": ("bell", "small bell", "handbell", "metal bell"),
    "pluck": ("plucked string", "plucked note", "guitar-like pluck", "harp string"),
    "drum": ("drum", "drum hit", "bass drum", "tom drum"),
    "knock": ("knock", "knock on a door", "wooden knock", "knocking sound"),
    "bird": ("bird", "small bird", "songbird", "sparrow"),
    "siren": ("siren", "alarm siren", "police siren", "wailing siren"),
    "hiss": ("hiss", "steady hiss", "white noise", "static hiss"),
    "rumble": ("rumble", "distant rumble", "rumbling noise", "thunder-like rumble"),
    "rain": ("rain", "rainfall", "falling rain", "pattering rain"),
}
UNCOUNTABLE = {"rain", "rainfall", "falling rain", "pattering rain", "white noise"}
EVENT_VERBS: dict[str, tuple[str, ...]] = {
    "beep": ("beeps", "sounds"),
    "buzzer": ("buzzes", "sounds"),
    "bell": ("rings", "chimes"),
    "pluck": ("is plucked", "sounds"),
    "drum": ("is hit", "is struck"),
    "knock": ("sounds", "is heard"),
    "bird": ("chirps", "tweets"),
}
EVENT_PLURALS: dict[str, tuple[str, ...]] = {
    "beep": ("beeps", "tones"),
    "buzzer": ("buzzes", "buzzer blasts"),
    "bell": ("bell rings", "bell strikes", "chimes"),
    "pluck": ("plucks", "plucked notes"),
    "drum": ("drum hits", "drum beats"),
    "knock": ("knocks", "door knocks"),
    "bird": ("bird chirps", "chirps", "tweets"),
}
CONTINUOUS_VERBS: dict[str, tuple[str, ...]] = {
    "siren": ("wails", "sounds"),
    "hiss": ("hisses", "continues"),
    "rumble": ("rumbles", "goes on"),
    "rain": ("falls", "patters", "pours down"),
}
COUNT_ADVERBS = {1: ("once", "one time", "a single time"), 2: ("twice", "two times"), 3: ("three times", "thrice")}
COUNT_NUMBERS = {2: ("two",), 3: ("three",)}
PITCH_WORDS = {
    "low": ("low", "low-pitched", "deep"),
    "medium": ("medium-pitched", "mid-pitched", "mid-range"),
    "high": ("high", "high-pitched", "shrill"),
}
LOUDNESS_WORDS = {"quiet": ("quiet", "soft", "faint"), "loud": ("loud", "strong", "intense")}
SWEEP_PHRASES = {
    "rising": ("rising in pitch", "sweeping upward", "with rising pitch", "going up in pitch"),
    "falling": ("falling in pitch", "sweeping downward", "with falling pitch", "going down in pitch"),
}
FADE_PHRASES = {
    "in": ("fading in", "gradually fading in", "slowly getting louder"),
    "out": ("fading out", "gradually fading away", "slowly dying away"),
}
REVERB_PHRASES = ("in a large hall", "in a reverberant hall", "in a big echoing room", "with strong reverberation")
BACKGROUND_PHRASES = ("with background noise", "over background noise", "with noise in the background")


# words of the caption vocabulary that name no particular source
GENERIC_WORDS = ("a", "an", "is", "on", "sound", "heard", "continues", "goes", "down", "small", "distant", "steady",
                 "harsh", "pure", "like", "wave", "falls", "note", "noise")


def word_stem(word: str) -> str:
    """A crude stem, enough to match caption words: 'beeping', 'beeps' -> 'beep'; 'drumming' -> 'drum'."""
    word = word.lower()
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "slz":
                word = word[:-1]
            break
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _source_stems() -> dict[str, str]:
    """Word stem -> the source it names, from the nouns, plurals and verbs the captions use."""
    generic = {word_stem(w) for w in GENERIC_WORDS}
    stems = {}
    for table in (NOUNS, EVENT_PLURALS, EVENT_VERBS, CONTINUOUS_VERBS):
        for source, phrases in table.items():
            for word in re.findall(r"[a-z]+", " ".join((source, *phrases))):
                if word_stem(word) not in generic:
                    stems.setdefault(word_stem(word), source)
    return stems


SOURCE_STEMS = _source_stems()


def mentioned_sources(text: str) -> list[str]:
    """The SynthCaps sources a text names by any caption word, in order: 'a beep then rain' -> ['beep', 'rain']."""
    found = (SOURCE_STEMS.get(word_stem(w)) for w in re.findall(r"[a-z]+", text.lower()))
    return list(dict.fromkeys(s for s in found if s))


def pick(rng: np.random.Generator, options) -> str:
    """One option, uniformly."""
    return options[int(rng.integers(len(options)))]


def with_article(phrase: str, noun: str) -> str:
    """Prefix a/an unless the noun is uncountable."""
    if noun in UNCOUNTABLE:
        return phrase
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def adjectives(attrs: dict, rng: np.random.Generator) -> list[str]:
    """Loudness then pitch adjective."""
    words = [pick(rng, LOUDNESS_WORDS[attrs["loudness"]])]
    if attrs.get("pitch"):
        words.append(pick(rng, PITCH_WORDS[attrs["pitch"]]))
    return words


def noun_phrase(attrs: dict, rng: np.random.Generator) -> str:
    """E.g. 'a loud high-pitched beep'."""
    noun = pick(rng, NOUNS[attrs["source"]])
    return with_article(" ".join(adjectives(attrs, rng) + [noun]), noun)


def event_sentence(attrs: dict, rng: np.random.Generator) -> str:
    """A counted-event clause, in one of several templates."""
    source, count = attrs["source"], attrs["count"]
    template = int(rng.integers(4))
    if template == 0:
        return f"{noun_phrase(attrs, rng)} {pick(rng, EVENT_VERBS[source])} {pick(rng, COUNT_ADVERBS[count])}"
    if template == 1:
        return f"{noun_phrase(attrs, rng)}, heard {pick(rng, COUNT_ADVERBS[count])}"
    if template == 2:
        return f"you can hear {noun_phrase(attrs, rng)} {pick(rng, COUNT_ADVERBS[count])}"
    adjs = " ".join(adjectives(attrs, rng))
    if count == 1:
        return f"a single {adjs} {pick(rng, NOUNS[source])}"
    return f"{pick(rng, COUNT_NUMBERS[count])} {adjs} {pick(rng, EVENT_PLURALS[source])}"


def continuous_sentence(attrs: dict, rng: np.random.Generator) -> str:
    """A continuous-sound clause (siren sweep, fade) in one of several templates."""
    np_ = noun_phrase(attrs, rng)
    template = int(rng.integers(3))
    if template == 0:
        text = f"{np_} {pick(rng, CONTINUOUS_VERBS[attrs['source']])}"
    elif template == 1:
        text = f"the sound of {np_}"
    else:
        text = f"you can hear {np_}"
    if attrs.get("sweep"):
        text += f", {pick(rng, SWEEP_PHRASES[attrs['sweep']])}"
    if attrs.get("fade"):
        text += f", {pick(rng, FADE_PHRASES[attrs['fade']])}"
    return text


def second_source_phrase(source: str, rng: np.random.Generator) -> str:
    """E.g. 'while rain falls' or 'and a distant rumble'."""
    noun = pick(rng, NOUNS[source])
    np_ = with_article(noun, noun)
    if rng.random() < 0.5:
        return f"while {np_} {pick(rng, CONTINUOUS_VERBS[source])}"
    return f"and {np_}"


def make_caption(attrs: dict, rng: np.random.Generator) -> str:
    """A caption naming every categorical attribute of `attrs` (extras in random order)."""
    main = event_sentence(attrs, rng) if attrs.get("count") else continuous_sentence(attrs, rng)
    extras = []
    if attrs.get("second_source"):
        extras.append(second_source_phrase(attrs["second_source"], rng))
    if attrs.get("reverb"):
        extras.append(pick(rng, REVERB_PHRASES))
    if attrs.get("background"):
        extras.append(pick(rng, BACKGROUND_PHRASES))
    order = rng.permutation(len(extras))
    text = " ".join([main] + [extras[i] for i in order])
    return text[0].upper() + text[1:]
