"""Prompt skeletons: an example's prompt with its values taken out, and clusters of examples whose skeletons share
their distinctive part, the sentence patterns a data set was written from.

    skeleton("Ship 8 orange candles to Dublin; the buyer is Ravi Costa.", ['{"city": "Dublin", "qty": 8}'])
    # -> 'ship {} orange candles to {} ; the buyer is {} .'
    found = find_patterns([prompt_and_answers(ex) for ex in examples])
    found.cluster[i], found.n_clusters, found.largest_share, found.repeated_share, found.templated
    seen = seen_patterns(train_texts, eval_texts)   # per eval example: does its cluster hold a training example?
    seen, clusters = pattern_marks(train_texts, eval_texts)   # ... and its cluster among the eval examples

Why: an eval split that shares its sentence patterns with training measures recall of phrasings, not the task
(issue 27: a random 10% split of 1,200 examples written from a few dozen patterns scored 1.000 where requests phrased
in new ways scored 0.685). `shipsft init` holds out whole clusters (data/split.py), the audit reports the share of
each eval set whose cluster is in training (audit/patterns.py), and every eval reports the seen-pattern and
unseen-pattern slices apart (eval/suites.py).

A value becomes `{}` (runs of values collapse into one, so "Oslo" and "Quebec City" fill the same slot):
  copied    a run of prompt words that the answer repeats: from a JSON or tool-call value, any run that holds a
            word other than a function word ("the", "to" alone are not values); from a text answer, a run of
            capitalised or numeric words ("Trattoria Roma", not the "table for" its reply repeats), or a lower-case
            run of two content words that the answers of three or more examples repeat ("code review": a value the
            set fills in; "capital of france", which one answer repeats, stays: natural questions would collapse
            into "what is the {} ?")
  number    a number with its separators and unit letters (4,165  2:30pm  2024-03-01), a number word (six)
  digits    any other word with a digit (IDs: A-1042, m-25570)
  quoted    text in double or curly quotes, or in single quotes that do not sit inside a word (don't)
  name      a capitalised word that does not start a sentence, among the words the whole set mostly capitalises
            there ("Oslo"; not "Please" when the set also writes "please" mid-sentence)
The rest is lower-cased; a line break is written "|".

Clusters. Prompts are often assembled from parts (a greeting, the request, an urgency remark, a sign-off), so two
whole skeletons of one request pattern differ wherever the parts do, and the parts that are shared by everything
(a greeting used with every request) would join every pattern into one. Each skeleton is therefore reduced to its
*core*: its word trigrams (a slot counts as a word) whose document frequency in the set is at most the median of
its own trigrams' (the rarer half: the request's words, not the greeting's). Identical cores are one cluster;
near-duplicate cores (MinHash, data/similar.py, Jaccard >= 0.3) join theirs, transitively. Natural data, where no
two prompts share their trigrams, keeps one cluster per example. The measurements behind the numbers: docs/eval.md.

Imports only data/ (data/similar.py, data/toolcalls.py, data/types.py).
"""
from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shipsft.data.similar import UnionFind, clusters_from_signatures, lsh_candidate_groups, signatures
from shipsft.data.toolcalls import message_tool_calls, next_json
from shipsft.data.types import Example

SLOT = "{}"
SHINGLE = 3  # word trigrams: a skeleton holds 3-40 words; 5-grams (the duplicate check's) leave a short one none
THRESHOLD = 0.3  # Jaccard of two cores at or above which they are one pattern (docs/eval.md: 0.5 split patterns)
WHOLE_THRESHOLD = 0.5  # ... and of two whole skeletons' trigram sets
NUM_PERM = 64  # MinHash permutations: the estimate's standard error at J = 0.3 is sqrt(0.21 / 64) = 0.06 ...
BANDS = 32  # ... in 32 bands of 2 rows: a pair at J = 0.3 shares a band with probability 1 - (1 - 0.3^2)^32 = 0.95
PAIRWISE = 512  # an LSH bucket up to this size is verified pair by pair (a 512 x 512 x 64 comparison: 16 MB) ...
SHORTLIST = 0.12  # ... its pairs within two MinHash standard errors (0.06 at J = 0.3) of the threshold, exactly
ROUNDS = 8  # ... a bigger one star-wise, this many rounds (data/similar.py: clusters_from_signatures)
TEMPLATED_SHARE = 0.3  # a set is written from patterns when this share of its examples shares its cluster ...
MIN_REPEAT = 3  # ... and at least this many do (a pair of near-duplicates is not a pattern)
NAME_SHARE = 0.5  # a word is a name when more than half of its occurrences past a sentence's start are capitalised
MAX_RUN = 12  # longest run of copied words looked for (a product name, an address line)
FUNCTION_WORDS = frozenset(
    "a an the and or but nor of to in on at by for from with without into onto over under about as is are was were "
    "be been being am do does did have has had i me my we us our you your he him his she her it its they them their "
    "this that these those there here what which who whom whose when where why how not no yes so if then than too "
    "very can could will would shall should may might must just also please pls thanks thank hi hello hey dear".split())

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand dozen".split())

_TOKEN = re.compile(r'(?P<quote>"[^"\n]{1,200}"|“[^”\n]{1,200}”|(?<!\w)\'[^\'\n]{1,200}\'(?!\w))'
                    r"|(?P<number>(?<![\w.])\d+(?:[.,:/\-]\d+)*(?:[a-zA-Z]{1,3})?(?!\w))"
                    r"|(?P<word>\w+(?:['’.\-]\w+)*)|(?P<punct>[^\w\s])|(?P<newline>\n)")
_SENTENCE_END = frozenset(".!?")
_FIRST_PERSON = re.compile(r"I(?:['’](?:m|d|ll|ve))?$")  # "I", "I'm", "I'd", "I'll", "I've": not names


def prompt_and_answers(ex: Example) -> tuple[str, list[str]]:
    """(the user's words, the answers): the first user turn of a conversation, the request that opens it (system
    prompts are shared instructions, tool results are data, and later user turns answer the assistant's questions:
    with them, every pairing of a request with a reply phrasing would be a pattern of its own), or the prompt of a
    completion; every assistant turn (its structured tool calls written as JSON), or the completion."""
    if ex.kind == "completion_text":
        return ex.prompt or "", [ex.completion or ""]
    if ex.kind != "chat":
        return ex.text or "", []
    users, answers = [], []
    for m in ex.messages or []:
        content = m.get("content")
        text = content if isinstance(content, str) else "\n".join(
            p.get("text", "") for p in content if isinstance(p, dict)) if isinstance(content, list) else ""
        if m.get("role") == "user" and not users:
            users.append(text)
        elif m.get("role") == "assistant":
            calls = message_tool_calls(m)
            answers.append("\n".join([text, *(json.dumps(c.arguments, ensure_ascii=False) for c in calls)]))
    return "\n".join(users), answers


def _leaves(value, out: list[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _leaves(v, out)
    elif isinstance(value, list):
        for v in value:
            _leaves(v, out)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        out.append(str(value))


def answer_values(answer: str) -> tuple[list[str], bool]:
    """(what an answer may copy from its prompt, whether those are structured values): the leaf values of every
    JSON object or list in it (a JSON answer, a tool call's arguments), else its whole text."""
    values: list[str] = []
    i, found = 0, False
    while (hit := next_json(answer, i)) is not None:
        value, _, i = hit
        _leaves(value, values)
        found = True
    return (values, True) if found else ([answer], False)


def _tokens(text: str) -> list[tuple[str, str, bool]]:
    """(kind, text, at the start of a sentence) per token."""
    out, start = [], True
    for m in _TOKEN.finditer(text):
        kind, t = m.lastgroup, m.group()
        out.append((kind, t, start))
        start = kind == "newline" or (kind == "punct" and t in _SENTENCE_END) or (start and kind == "punct")
    return out


def _value_word(word: str) -> bool:
    """A word that names or counts something: capitalised (past "I"), or with a digit."""
    return _capitalised(word) or any(c.isdigit() for c in word)


def _capitalised(word: str) -> bool:
    return word[0].isupper() and not word.isupper() and not _FIRST_PERSON.match(word)


def name_words(prompts: Sequence[str]) -> frozenset[str]:
    """The words (lower-cased) that the prompts mostly capitalise past a sentence's start: names."""
    caps, seen = Counter(), Counter()
    for p in prompts:
        _count_names(_tokens(p), caps, seen)
    return _names(caps, seen)


def _count_names(tokens: list[tuple[str, str, bool]], caps: Counter, seen: Counter) -> None:
    for kind, t, start in tokens:
        if kind == "word" and not start:
            w = t.lower()
            seen[w] += 1
            caps[w] += _capitalised(t)


def _names(caps: Counter, seen: Counter) -> frozenset[str]:
    return frozenset(w for w, n in caps.items() if n > NAME_SHARE * seen[w])


def _lower_run(tokens: list[tuple[str, str, bool]], i: int, n: int) -> tuple[str, ...]:
    """The words of tokens[i:i+n] up to the first capitalised or numeric one, trailing function words dropped, when
    two or more of them are content words (a text answer's repeated "code review"); else ()."""
    if n < 2:
        return ()
    j = next((j for j in range(n) if _value_word(tokens[i + j][1])), n)
    run = [t.lower() for _, t, _ in tokens[i:i + j]]
    while run and run[-1] in FUNCTION_WORDS:
        run.pop()
    return tuple(run) if sum(w not in FUNCTION_WORDS for w in run) >= 2 else ()


def _answer_runs(answers: Sequence[str]) -> list[tuple[list[str], bool]]:
    """The words of every value the answers hold (`answer_values`), with whether it is a structured one."""
    runs: list[tuple[list[str], bool]] = []
    for a in answers:
        values, structured = answer_values(a)
        runs += [([m.group().lower() for m in _TOKEN.finditer(v) if m.lastgroup in ("word", "number")], structured)
                 for v in values]
    return runs


def _matches(tokens: list[tuple[str, str, bool]], answers: Sequence[str]) -> set[tuple[int, int, bool]]:
    """Every (prompt position i, run length, structured) where a run of prompt words starting at i repeats an
    answer value's words, each once (a word the answers repeat often starts one run per occurrence; the callers
    need only the distinct ones)."""
    runs = _answer_runs(answers)
    words = [t.lower() if kind in ("word", "number") else None for kind, t, _ in tokens]
    where: dict[str, list[tuple[int, int]]] = {}
    for k, (vw, _) in enumerate(runs):
        for p, w in enumerate(vw):
            where.setdefault(w, []).append((k, p))
    found: set[tuple[int, int, bool]] = set()
    for i, w in enumerate(words):
        for k, p in where.get(w, ()) if w is not None else ():
            vw, structured = runs[k]
            n = 0
            while n < MAX_RUN and i + n < len(words) and p + n < len(vw) and words[i + n] == vw[p + n]:
                n += 1
            found.add((i, n, structured))
    return found


def text_values(prompt: str, answers: Sequence[str]) -> set[tuple[str, ...]]:
    """The lower-case runs of two or more content words that a text answer repeats from the prompt (`_lower_run`):
    values when several examples of a set repeat the same one (`find_patterns`)."""
    tokens = _tokens(prompt)
    return _text_values(tokens, _matches(tokens, answers))


def _text_values(tokens: list[tuple[str, str, bool]], matches: set[tuple[int, int, bool]]) -> set[tuple[str, ...]]:
    return {run for i, n, structured in matches if not structured and n >= 2
            for run in [_lower_run(tokens, i, n)] if run}


def _copied(tokens: list[tuple[str, str, bool]], matches: set[tuple[int, int, bool]],
            values: frozenset[tuple[str, ...]]) -> list[bool]:
    """Which prompt words lie in a run that an answer repeats (module docstring: copied)."""
    best = [0] * len(tokens)
    for i, n, structured in matches:
        if not structured:  # a text answer: its leading names or numbers, or a lower-case run the set repeats
            lead = next((j for j in range(n) if not _value_word(tokens[i + j][1])), n)
            if not lead:
                run = _lower_run(tokens, i, n)
                n = len(run) if run and run in values else 0
            else:
                n = lead
        if any(t.lower() not in FUNCTION_WORDS for _, t, _ in tokens[i:i + n]):
            best[i] = max(best[i], n)
    slot, i = [False] * len(tokens), 0
    while i < len(tokens):
        for j in range(i, i + best[i]):
            slot[j] = True
        i += max(best[i], 1)
    return slot


def skeleton(prompt: str, answers: Sequence[str] = (), names: frozenset[str] | None = None,
             values: frozenset[tuple[str, ...]] = frozenset()) -> str:
    """The prompt with its values as `{}` (module docstring), lower-cased, tokens joined by single spaces.
    `names`: the words that count as names when capitalised (name_words over the whole set); None = any. `values`:
    the lower-case runs a text answer may give away (repeated_values over the whole set)."""
    tokens = _tokens(prompt)
    return _skeleton(tokens, _matches(tokens, answers), names, values)


def _skeleton(tokens: list[tuple[str, str, bool]], matches: set[tuple[int, int, bool]],
              names: frozenset[str] | None, values: frozenset[tuple[str, ...]]) -> str:
    slot = _copied(tokens, matches, values)
    out: list[str] = []
    for (kind, text, start), copied in zip(tokens, slot):
        name = kind == "word" and not start and _capitalised(text) and (names is None or text.lower() in names)
        value = copied or kind in ("quote", "number") or name or (kind == "word" and (
            any(c.isdigit() for c in text) or text.lower() in NUMBER_WORDS))
        if kind == "newline":
            if out and out[-1] != "|":
                out.append("|")  # a line break ends a sentence as a full stop does
        elif value:
            if not out or out[-1] != SLOT:
                out.append(SLOT)
        else:
            out.append(text.lower())
    return " ".join(out).removesuffix(" |")


def trigrams(sk: str) -> list[str]:
    """The skeleton's word trigrams that hold two or more words besides slots (a slot counts as a word, punctuation
    does not; "{} at {}" says nothing of a pattern), each once; a skeleton with none is one 'trigram' of all its
    words."""
    w = [t for t in sk.split(" ") if t == SLOT or t[:1].isalnum() or t[:1] == "_"]
    grams = [w[i:i + SHINGLE] for i in range(len(w) - SHINGLE + 1)]
    kept = list(dict.fromkeys(" ".join(g) for g in grams if sum(t != SLOT for t in g) >= 2))
    return kept or ([" ".join(w)] if w else [])


def cores(skeletons: Sequence[str]) -> list[tuple[str, ...]]:
    """Per skeleton: its core, the trigrams whose document frequency is at most the median of its own trigrams'
    (module docstring), sorted."""
    return _cores([trigrams(s) for s in skeletons])


def _cores(grams: Sequence[list[str]]) -> list[tuple[str, ...]]:
    df = Counter(g for gs in grams for g in gs)
    out = []
    for gs in grams:
        if not gs:
            out.append(())
            continue
        cut = statistics.median(df[g] for g in gs)
        out.append(tuple(sorted(g for g in gs if df[g] <= cut)))
    return out


def _trigram_hash(gram: str) -> int:
    """A trigram's 64-bit hash from its text alone: the same in any order, process or run (WordIndex numbers words
    in the order it meets them, which would make the clusters depend on the order of the examples)."""
    return int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little")


def _minhash_links(sets: Sequence[tuple[str, ...]], threshold: float, uf: UnionFind, of: list[int],
                   hashed: dict[str, int]) -> None:
    """Union (in `uf`, over the ids `of[k]`) every two trigram sets whose MinHash Jaccard is >= `threshold`:
    identical sets, and every pair in a shared LSH bucket (data/similar.py) whose exact Jaccard is (a bucket of up to
    PAIRWISE sets, pair by pair: the signatures shortlist, the sets decide), or whose signatures agree that far (a
    bigger bucket, star-wise: similar.py); `hashed` holds every trigram's hash (`_trigram_hash`). Up to that size the clusters do not depend on the order of the examples,
    nor on MinHash's estimation error."""
    distinct = sorted(set(sets))
    index = {c: k for k, c in enumerate(distinct)}
    first: dict[int, int] = {}
    for k, c in enumerate(sets):
        uf.union(first.setdefault(index[c], of[k]), of[k])  # identical sets: one cluster
    hashes = [[hashed[g] for g in c] for c in distinct]
    words = np.array([h for hs in hashes for h in hs], dtype=np.uint64)
    offsets = np.cumsum([0] + [len(hs) for hs in hashes]).astype(np.int64)
    sig, has = signatures(words, offsets, num_perm=NUM_PERM, shingle=1)
    for members in lsh_candidate_groups(sig, has, BANDS):
        if len(members) > PAIRWISE:
            pairs = [(ms[0], m) for ms, _ in clusters_from_signatures(sig[members], has[members], threshold,
                                                                      bands=BANDS, rounds=ROUNDS) for m in ms[1:]]
            pairs = [(members[a], members[b]) for a, b in pairs]
        else:  # the signatures shortlist (two standard errors under the threshold), the sets decide exactly
            close = (sig[members][:, None, :] == sig[members][None, :, :]).mean(axis=2) >= threshold - SHORTLIST
            pairs = [(members[a], members[b]) for a, b in zip(*np.nonzero(np.triu(close, 1)))
                     if _jaccard(distinct[members[a]], distinct[members[b]]) >= threshold]
        for a, b in pairs:
            uf.union(first[int(a)], first[int(b)])


def _jaccard(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def cluster_skeletons(skeletons: Sequence[str], threshold: float = THRESHOLD) -> list[int]:
    """Cluster id per skeleton, numbered in order of first appearance: skeletons whose cores (`cores`) are the
    same or near-duplicates (MinHash Jaccard >= `threshold`), or whose whole trigram sets are near-duplicates
    (Jaccard >= WHOLE_THRESHOLD: a short skeleton's core is one or two trigrams), are one cluster, transitively."""
    uf = UnionFind(len(skeletons))
    ids = list(range(len(skeletons)))
    grams = [trigrams(s) for s in skeletons]
    hashed = {g: _trigram_hash(g) for gs in grams for g in gs}  # each trigram once; a core is a subset of its set
    _minhash_links(_cores(grams), threshold, uf, ids, hashed)
    _minhash_links([tuple(sorted(g)) for g in grams], WHOLE_THRESHOLD, uf, ids, hashed)
    roots: dict[int, int] = {}
    return [roots.setdefault(uf.find(i), len(roots)) for i in ids]


@dataclass
class Patterns:
    """The clusters of one set of prompts (`find_patterns`)."""

    skeletons: list[str]
    cluster: list[int]  # per example: its cluster, numbered 0.. in order of first appearance

    @property
    def sizes(self) -> Counter:
        return Counter(self.cluster)

    @property
    def n_clusters(self) -> int:
        return len(self.sizes)

    @property
    def largest_share(self) -> float:
        return max(self.sizes.values()) / len(self.cluster) if self.cluster else 0.0

    @property
    def repeated_share(self) -> float:
        """Share of the examples whose cluster holds another example."""
        sizes = self.sizes
        return sum(1 for c in self.cluster if sizes[c] > 1) / len(self.cluster) if self.cluster else 0.0

    @property
    def templated(self) -> bool:
        """Written from sentence patterns: TEMPLATED_SHARE of the examples share their cluster, MIN_REPEAT at least."""
        repeated = round(self.repeated_share * len(self.cluster))
        return repeated >= MIN_REPEAT and repeated >= TEMPLATED_SHARE * len(self.cluster)

    def largest(self) -> str:
        """A skeleton of the largest cluster (its first example's)."""
        top = self.sizes.most_common(1)[0][0]
        return self.skeletons[self.cluster.index(top)]


def repeated_values(texts: Sequence[tuple[str, Sequence[str]]]) -> frozenset[tuple[str, ...]]:
    """The lower-case runs that text answers repeat from their prompts (`text_values`) in MIN_REPEAT or more
    examples: a topic a booking confirmation repeats; not "capital of france", which one answer repeats once."""
    return _repeated(Counter(run for p, a in texts for run in text_values(p, a)))


def _repeated(counts: Counter) -> frozenset[tuple[str, ...]]:
    return frozenset(run for run, n in counts.items() if n >= MIN_REPEAT)


def find_patterns(texts: Sequence[tuple[str, Sequence[str]]], threshold: float = THRESHOLD) -> Patterns:
    """Skeletons and clusters of (prompt, answers) pairs (`prompt_and_answers`). Two passes: the first reads the
    set's names and repeated values, the second writes each skeleton with them (each prompt is tokenised and
    matched against its answers once per pass, not held: a million prompts' tokens would not fit in memory)."""
    caps, seen, counts = Counter(), Counter(), Counter()
    for p, a in texts:
        tokens = _tokens(p)
        _count_names(tokens, caps, seen)
        counts.update(_text_values(tokens, _matches(tokens, a)))
    names, values = _names(caps, seen), _repeated(counts)
    skeletons = []
    for p, a in texts:
        tokens = _tokens(p)
        skeletons.append(_skeleton(tokens, _matches(tokens, a), names, values))
    return Patterns(skeletons, cluster_skeletons(skeletons, threshold))


def seen_patterns(train: Sequence[tuple[str, Sequence[str]]], evals: Sequence[tuple[str, Sequence[str]]],
                  threshold: float = THRESHOLD) -> list[bool]:
    """Per eval example: whether its cluster, found over training and eval together, holds a training example (its
    sentence pattern was trained on)."""
    return pattern_marks(train, evals, threshold)[0]


def pattern_marks(train: Sequence[tuple[str, Sequence[str]]], evals: Sequence[tuple[str, Sequence[str]]],
                  threshold: float = THRESHOLD) -> tuple[list[bool], list[int]]:
    """Per eval example: `seen_patterns`'s flag, and its cluster (found over training and eval together), numbered
    0.. in order of first appearance among the eval examples: the sentence patterns an eval's CIs resample whole
    (eval/metrics.py)."""
    found = find_patterns(list(train) + list(evals), threshold)
    trained = set(found.cluster[: len(train)])
    mine = found.cluster[len(train):]
    ids: dict[int, int] = {}
    return [c in trained for c in mine], [ids.setdefault(c, len(ids)) for c in mine]
