"""The sentences `vita bench duplex --public` builds its scenario sets from, and sets of one's own.

The built-in set (below) has been looked at by every session that tuned the duplex engine; a candidate judged on it
is judged on seen data. `--sentences FILE` (with `--seed`) runs the same families on other sentences: a JSON object
whose keys are any of

    queries, interruptions     lists of [question, scripted reply] (the reply starts with a state token, "<1> ...")
    backchannels, to_others, background, monologue      lists of sentences

each a non-empty list; a key left out keeps the built-in list.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from vita.duplex.scenarios import LONG, ScenarioError, read_json

__all__ = ["BUILTIN", "Sentences", "load_sentences"]

QUERIES = [
    ("What is the weather like today?", LONG),
    ("Tell me a joke about cats.", "<1> Here is one. A cat walks into a bar, orders a milk, and then leaves "
                                   "without paying."),
    ("How far away is the moon?", "<1> The moon is about three hundred and eighty thousand kilometres from the earth, "
                                  "a little more than one light second."),
    ("What is the capital of France?", "<1> The capital of France is Paris, a city on the river Seine, famous for "
                                       "its museums and its food."),
    ("Who wrote the play Hamlet?", "<1> Hamlet was written by William Shakespeare, around the year sixteen hundred, "
                                   "and it is one of his longest plays."),
    ("How do I boil an egg?", "<1> Put the egg in boiling water for about seven minutes, then cool it in cold water "
                              "before you peel it."),
    ("Why is the sky blue?", "<1> Sunlight is scattered by the air, and blue light is scattered much more than red, "
                             "so the whole sky looks blue."),
    ("Can you recommend a good book?", "<1> Try The Hobbit by Tolkien, a short adventure that most readers enjoy "
                                       "from the first page."),
    ("What time does the sun set tonight?", "<1> The sun sets at about a quarter past five this evening, a little "
                                            "earlier than yesterday."),
    ("How many legs does a spider have?", "<1> A spider has eight legs, which is one way to tell it apart from an "
                                          "insect, which has six."),
    ("What should I cook for dinner?", "<1> A simple pasta with tomatoes, garlic and basil is quick, cheap and "
                                       "good on a cold evening."),
    ("Where is the nearest train station?", "<1> The nearest station is the central one, about ten minutes on foot "
                                            "down the main street."),
]
INTERRUPTIONS = [("Wait, what about tomorrow?", "<1> Tomorrow it rains in the morning and clears up later."),
                 ("Sorry, can you speak more slowly?", "<1> Of course. I will speak more slowly now."),
                 ("Stop, tell me about Paris instead.", "<1> Paris is the capital of France."),
                 ("Hold on, is it going to snow?", "<1> No, there is no snow in the forecast."),
                 ("Wait, can you say that again?", "<1> Sure, I will say it again."),
                 ("No, I meant something else.", "<1> Sorry, what did you mean?"),
                 ("Actually, skip that and tell me the time.", "<1> It is twenty past three."),
                 ("Excuse me, how long will that take?", "<1> About ten minutes."),
                 ("One moment, what was the first part?", "<1> The first part was about the morning."),
                 ("Sorry to cut in, is that in Celsius?", "<1> Yes, all of it is in Celsius."),
                 ("Hang on, which day did you say?", "<1> I said Thursday."),
                 ("Okay stop, that is enough, thank you.", "<1> You are welcome.")]
BACKCHANNELS = ["Yeah.", "Uh-huh.", "Okay.", "Right.", "I see.", "Sure."]
TO_OTHERS = ["Hey Sam, could you close the window please?", "Honey, the pasta is ready in five minutes.",
             "No, not you, I was talking to my brother.", "Can you pass me the salt, Anna?",
             "Mum, where did you put my keys?", "Tom, hurry up, we are going to be late.",
             "Thanks, Maria, just leave it on the table.", "Kids, please turn the music down a bit.",
             "David, did you feed the cat this morning?", "Yes dear, I will call your mother later.",
             "Paul, can you open the door for the postman?", "Lisa, your phone is ringing in the kitchen."]
BACKGROUND = ["And in other news tonight, the city council met to discuss the new bridge.",
              "The weather on the coast stays mild for the rest of the week.",
              "Welcome back to the show, our next guest is a famous chef.",
              "Traffic is heavy on the ring road this evening, expect delays.",
              "The home team scored twice in the second half and won the match.",
              "Stocks closed higher today after a quiet week of trading.",
              "Stay with us, after the break we visit a farm in the mountains.",
              "Scientists say the new telescope will see the oldest galaxies.",
              "Tomorrow morning expect fog in the valleys and sun in the afternoon.",
              "The museum opens its new wing to visitors next Saturday.",
              "Police have closed the main road after a minor accident.",
              "And now, the music that everyone has been dancing to this summer."]
MONOLOGUE = ["So yesterday I went to the market in the morning.", "They had the most beautiful tomatoes there.",
             "And then I met an old friend from school."]


Pair = tuple[str, str]


@dataclass(frozen=True)
class Sentences:
    """What the users, the people they talk to and the television say in the public scenario sets."""

    queries: tuple[Pair, ...] = tuple(QUERIES)
    interruptions: tuple[Pair, ...] = tuple(INTERRUPTIONS)
    backchannels: tuple[str, ...] = tuple(BACKCHANNELS)
    to_others: tuple[str, ...] = tuple(TO_OTHERS)
    background: tuple[str, ...] = tuple(BACKGROUND)
    monologue: tuple[str, ...] = tuple(MONOLOGUE)


BUILTIN = Sentences()
_PAIRS = {"queries", "interruptions"}


def load_sentences(path: str | Path) -> Sentences:
    """A sentence file (module docstring), strictly checked; errors name the file and the key."""
    file = Path(path)
    data = read_json(file)
    names = [f.name for f in fields(Sentences)]
    if not isinstance(data, dict):
        raise ScenarioError(f"{file.name}: expected a JSON object with any of the keys {', '.join(names)}")
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ScenarioError(f"{file.name}: unknown key {unknown[0]!r} (known: {', '.join(names)})")
    out = {}
    for key, value in data.items():
        if not isinstance(value, list) or not value:
            raise ScenarioError(f"{file.name}: {key}: expected a non-empty list")
        for i, item in enumerate(value):
            ok = (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) and x.strip() for x in item)
                  if key in _PAIRS else isinstance(item, str) and item.strip())
            if not ok:
                want = "[sentence, scripted reply], two non-empty strings" if key in _PAIRS else "a non-empty string"
                raise ScenarioError(f"{file.name}: {key}[{i}]: expected {want}")
        out[key] = tuple(tuple(x) for x in value) if key in _PAIRS else tuple(value)
    return Sentences(**out)
