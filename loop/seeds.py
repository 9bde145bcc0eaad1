"""Seeds derived from names and numbers: the same parts give the same seed in every process and on every run
(Python's own hash() is salted per process, so it cannot serve)."""

from __future__ import annotations

import hashlib


def derived_seed(*parts: object) -> int:
    """A 32-bit seed from `parts`, joined by ":" and hashed with BLAKE2b."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def round_train_seed(replicate: int) -> int:
    """The training seed of every round of replicate `replicate`: the same for every strategy (paired training
    noise) and for the auto controller's probes, so that arms differ by their data alone."""
    return derived_seed("train", replicate)


def probe_train_seed(replicate: int, repeat: int) -> int:
    """The training seed of the lookahead's probe repeat `repeat` in replicate `replicate`: repeat 0 trains as the
    round does (`round_train_seed`), later repeats draw seeds of their own; every arm's probe of one repeat shares
    it, so the arms stay paired within each repeat."""
    return round_train_seed(replicate) if repeat == 0 else derived_seed("train", replicate, "probe", repeat)


def dev_sampling_seed(replicate: int, round_: int) -> int:
    """The sampling seed of the dev split's evaluation in round `round_` of replicate `replicate`: the same for the
    round's model and for every probe of the auto controller's lookahead, so that their dev accuracies differ by
    the model alone."""
    return derived_seed("dev", replicate, round_)
