"""data/similar.py: the word n-gram hashes equal the plain rolling hash, MinHash estimates Jaccard, and LSH +
verification finds the planted near-duplicate and only it (moved here from tests/audit with the machinery)."""
from __future__ import annotations

import random

from shipsft.data.similar import MULT, WordIndex, minhash_signatures, near_duplicate_clusters, ngram_hashes

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon "
         "phi chi psi omega red green blue cyan magenta yellow black white river mountain forest desert ocean lake "
         "valley canyon island harbor").split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_ngram_hashes_match_the_plain_rolling_hash():
    docs = ["a b c d e f g", "x y", "", "a b c d e f g h i j", "p q r"]
    words, offsets = WordIndex().encode(docs)
    h, d = ngram_hashes(words, offsets, 3, short_docs=True)
    want_h, want_d = [], []
    for k in range(len(docs)):
        w = [int(x) for x in words[offsets[k]:offsets[k + 1]]]
        starts = range(len(w) - 2) if len(w) >= 3 else ([0] if w else [])
        for i in starts:
            v = 0
            for x in w[i:i + 3]:
                v = (v * int(MULT) + x) % 2**64
            want_h.append(v)
            want_d.append(k)
    assert d.tolist() == want_d and h.tolist() == want_h  # "x y" (2 words) gets one hash of both


def test_minhash_estimates_jaccard():
    rng = random.Random(3)
    a = [f"w{rng.randrange(10**6)}" for _ in range(200)]
    b = list(a)
    for k in range(0, 200, 20):  # 10 substitutions spoil up to 50 of 196 shingles
        b[k] = "changed"
    sa = {tuple(a[i:i + 5]) for i in range(196)}
    sb = {tuple(b[i:i + 5]) for i in range(196)}
    true = len(sa & sb) / len(sa | sb)
    sig, has = minhash_signatures([" ".join(a), " ".join(b)], num_perm=256)
    assert has.all() and abs((sig[0] == sig[1]).mean() - true) < 0.08


def test_near_duplicate_clusters():
    rng = random.Random(4)
    docs = [sentence(rng, 120) for _ in range(200)]
    near = docs[10].split()
    near[60] = "changed"
    docs.append(" ".join(near))  # 5 of 116 shingles differ: J = 111/121 = 0.92 with docs[10]
    far = docs[20].split()
    for k in range(0, 120, 12):
        far[k] = "changed"
    docs.append(" ".join(far))  # ~50 of 116 shingles differ: J ~ 0.4 with docs[20]
    clusters = near_duplicate_clusters(docs)
    assert [c for c, _ in clusters] == [[10, 200]]
