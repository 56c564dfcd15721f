"""Near-duplicate machinery over word n-grams, vectorised with numpy: stable word hashes (`WordIndex`), the hash of
every word n-gram of a corpus in a fixed number of passes (`ngram_hashes`), MinHash signatures, LSH buckets and the
clusters they verify. The audit's duplicate and contamination checks (audit/text.py) and the prompt-skeleton clusters
(data/skeleton.py: the phrasing-aware split and the seen / unseen pattern slices) share it.

    clusters = near_duplicate_clusters(["the cat sat on the mat today", "the cat sat on the mat today!"], 0.8)

Hashing 100,000 conversations (~10M words) takes a few seconds on 2 cores, where a per-shingle Python MinHash
(datasketch's `update`) would take minutes.

Imports only numpy (a leaf of data/).
"""
from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np

# Words are whitespace-separated after mapping ASCII punctuation to spaces ("Paris." and "paris" are one word).
PUNCT_TO_SPACE = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})
MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio): polynomial rolling hash over words
MINV = np.uint64(pow(int(MULT), -1, 2**64))  # its inverse mod 2^64 (exists because it is odd)


class WordIndex:
    """Words -> stable random 64-bit hashes, shared by every corpus hashed with it (train and eval alike)."""

    def __init__(self, seed: int = 0):
        self._ids: defaultdict[str, int] = defaultdict(itertools.count().__next__)
        self._rng = np.random.default_rng(seed)
        self._hash = np.zeros(0, dtype=np.uint64)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """All texts' word hashes concatenated, and offsets (len(texts)+1) into that array."""
        ids: list[int] = []
        offsets = np.zeros(len(texts) + 1, dtype=np.int64)
        get = self._ids.__getitem__
        for k, t in enumerate(texts):
            # translate + split + map() keep the per-word work in C: ~3x faster than a \\w+ regex
            ids.extend(map(get, t.lower().translate(PUNCT_TO_SPACE).split()))
            offsets[k + 1] = len(ids)
        if len(self._ids) > len(self._hash):
            new = self._rng.integers(1, 2**63, size=len(self._ids) - len(self._hash), dtype=np.uint64)
            self._hash = np.concatenate([self._hash, new])
        return self._hash[np.asarray(ids, dtype=np.int64)], offsets


def ngram_hashes(words: np.ndarray, offsets: np.ndarray, n: int, short_docs: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every word n-gram that lies inside one document, and the document index of each (non-decreasing).

    The hash of the n-gram at i is H_i = sum_k w[i+k] * M^(n-1-k) mod 2^64. Because M is odd it is invertible mod
    2^64, so H_i = M^(i+n-1) * (S[i+n] - S[i]) with the prefix sums S[j] = sum_{t<j} w[t] * M^-t: a fixed number
    of passes over the corpus whatever n is (13-grams cost the same as 5-grams).
    short_docs=True gives a document with fewer than n words one hash of all its words (MinHash needs a shingle
    for every non-empty document); contamination leaves them out (a 3-word answer is not 'long overlap').
    """
    L = len(words)
    lens = np.diff(offsets)
    hashes, docs = [np.zeros(0, dtype=np.uint64)], [np.zeros(0, dtype=np.int64)]
    if L >= n:
        m = L - n + 1
        with np.errstate(over="ignore"):
            pow_inv = np.full(L, MINV, dtype=np.uint64)  # M^-t for t = 0..L-1
            pow_inv[0] = 1
            np.cumprod(pow_inv, out=pow_inv)
            prefix = np.zeros(L + 1, dtype=np.uint64)  # S[j] = sum_{t<j} w[t] M^-t
            np.cumsum(words * pow_inv, out=prefix[1:])
            del pow_inv
            h = prefix[n:] - prefix[:m]
            del prefix
            pow_m = np.full(m, MULT, dtype=np.uint64)  # M^(i+n-1) for i = 0..m-1
            pow_m[0] = MULT ** np.uint64(n - 1)
            np.cumprod(pow_m, out=pow_m)
            h *= pow_m
        doc = np.repeat(np.arange(len(lens)), lens)[:m]
        ok = np.arange(n, m + n) <= offsets[doc + 1]
        hashes.append(h[ok])
        docs.append(doc[ok])
    if short_docs:
        for d in np.flatnonzero((lens > 0) & (lens < n)):
            h = np.uint64(0)
            with np.errstate(over="ignore"):
                for w in words[offsets[d]:offsets[d + 1]]:
                    h = h * MULT + w
            hashes.append(np.array([h], dtype=np.uint64))
            docs.append(np.array([d], dtype=np.int64))
    h, d = np.concatenate(hashes), np.concatenate(docs)
    if len(hashes) > 2:  # short documents were appended at the end: restore document order
        order = np.argsort(d, kind="stable")
        h, d = h[order], d[order]
    return h, d


def minhash_signatures(texts: list[str], num_perm: int = 64, shingle: int = 5, seed: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of plain texts (see `signatures`)."""
    return signatures(*WordIndex().encode(texts), num_perm=num_perm, shingle=shingle, seed=seed)


def signatures(words: np.ndarray, offsets: np.ndarray, num_perm: int = 64, shingle: int = 5, seed: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures [n_docs, num_perm] (uint32) over word `shingle`-grams; and a has-shingles flag per doc.

    Permutation p is the multiply-shift hash (a_p * x + b_p) >> 32 over 64-bit shingle hashes. The shift is
    monotone, so it is applied after the per-document minimum (one `np.minimum.reduceat` per permutation over the
    whole corpus, computed in a reused buffer): three passes per permutation, no Python loop over shingles.
    """
    n_docs = len(offsets) - 1
    h, doc = ngram_hashes(words, offsets, shingle, short_docs=True)
    sig = np.full((n_docs, num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
    has = np.zeros(n_docs, dtype=bool)
    if len(h) == 0:
        return sig, has
    starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
    owners = doc[starts]
    has[owners] = True
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    buf = np.empty_like(h)
    with np.errstate(over="ignore"):
        for p in range(num_perm):
            np.multiply(h, a[p], out=buf)
            buf += b[p]
            sig[owners, p] = (np.minimum.reduceat(buf, starts) >> np.uint64(32)).astype(np.uint32)
    return sig, has


def lsh_candidate_groups(sig: np.ndarray, has: np.ndarray, bands: int = 16) -> list[np.ndarray]:
    """Groups of documents that share all rows of at least one band (LSH buckets with 2+ members).

    16 bands x 4 rows over 64 permutations: a pair with Jaccard 0.8 shares some band with probability
    1-(1-0.8^4)^16 = 0.9998, a pair at 0.5 with 0.64; candidates are then verified on the full signature.
    """
    num_perm = sig.shape[1]
    rows = num_perm // bands
    idx = np.flatnonzero(has)
    groups = []
    for b in range(bands):
        block = sig[idx, b * rows:(b + 1) * rows].astype(np.uint64)
        key = np.zeros(len(idx), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for c in range(rows):
                key = key * MULT + block[:, c]
        order = np.argsort(key, kind="stable")
        k = key[order]
        cut = np.flatnonzero(np.r_[True, k[1:] != k[:-1], True])
        for s, e in itertools.pairwise(cut):
            if e - s > 1:
                groups.append(idx[order[s:e]])
    return groups


# on 1M uint64 (2-core AMD EPYC, numpy 2): np.unique ~2 s, a sort ~0.1 s; np.isin ~10x slower than a binary search
def sorted_unique(a: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based unique is an order of magnitude slower on uint64 hashes)."""
    s = np.sort(a)
    return s[np.r_[True, s[1:] != s[:-1]]] if len(s) else s


def sorted_member(sorted_u: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Boolean mask: which of q are in the sorted unique array (binary search: faster than np.isin here)."""
    if not len(sorted_u) or not len(q):
        return np.zeros(len(q), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_u, q), len(sorted_u) - 1)
    return sorted_u[idx] == q


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_clusters(texts: list[str], threshold: float = 0.8, num_perm: int = 64, shingle: int = 5
                            ) -> list[tuple[list[int], float]]:
    """Clusters (text indices, lowest verified similarity) of texts whose estimated Jaccard >= threshold."""
    return clusters_from_signatures(*minhash_signatures(texts, num_perm, shingle), threshold)


def clusters_from_signatures(sig: np.ndarray, has: np.ndarray, threshold: float = 0.8, bands: int = 16,
                             rounds: int = 4) -> list[tuple[list[int], float]]:
    """Clusters (row indices, lowest verified similarity) of signature rows whose estimated Jaccard >= threshold.

    Each LSH bucket (`bands` of the signature, lsh_candidate_groups) is verified star-wise against its first
    still-unclustered member (up to `rounds` rounds), so a bucket of k documents costs O(k) signature comparisons,
    not O(k^2): templated data can put thousands of documents in one bucket.
    """
    uf = UnionFind(len(sig))
    low: dict[tuple[int, int], float] = {}
    for members in lsh_candidate_groups(sig, has, bands):
        rest = members
        for _ in range(rounds):
            if len(rest) < 2:
                break
            rep, others = rest[0], rest[1:]
            sim = (sig[others] == sig[rep]).mean(axis=1)
            close = others[sim >= threshold]
            for j, s in zip(close, sim[sim >= threshold]):
                uf.union(int(rep), int(j))
                low[(int(rep), int(j))] = float(s)
            rest = others[sim < threshold]
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(sig)):
        if has[i]:
            clusters[uf.find(i)].append(i)
    lowest: dict[int, float] = {}
    for (a, _), s in low.items():
        root = uf.find(a)
        lowest[root] = min(s, lowest.get(root, 1.0))
    out = [(sorted(mem), lowest.get(root, 1.0)) for root, mem in clusters.items() if len(mem) > 1]
    out.sort(key=lambda c: (-len(c[0]), c[0][0]))
    return out
