"""The decoder vocabulary: an ordered list of string tokens with fixed special ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


SEP = "<sep>"


SPECIALS = (PAD, BOS, EOS)


@dataclass(frozen=True)
class Vocab:
    """Token strings in id order; `<pad>`, `<bos>`, `<eos>` are always ids 0, 1, 2."""

    tokens: tuple[str, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:3]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {self.tokens[:3]}")
        ids = {tok: i for i, tok in enumerate(self.tokens)}
        if len(ids) != len(self.tokens):
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ValueError(f"vocabulary has duplicate tokens: {dupes[:10]}")
        object.__setattr__(self, "_ids", ids)

    @classmethod
    def build(cls, task_tokens: Iterable[str], label_tokens: Iterable[str]) -> Vocab:
        """A fresh vocabulary: specials, then task tokens, then label tokens (first-seen order)."""
        tokens: list[str] = list(SPECIALS)
        for tok in [*task_tokens, *label_tokens]:
            if tok not in tokens:
                tokens.append(tok)
        return cls(tuple(tokens))

    @classmethod
    def from_mapping(cls, mapping: dict[str, int]) -> Vocab:
        """Rebuild from a token -> id map (e.g. a published `decoder_tokenizer.yaml`)."""
        by_id = sorted(mapping.items(), key=lambda kv: kv[1])
        if [i for _, i in by_id] != list(range(len(by_id))):
            raise ValueError("token ids must be exactly 0..N-1")
        return cls(tuple(tok for tok, _ in by_id))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def id(self, token: str) -> int:
        """The id of one token; KeyError names the token."""
        try:
            return self._ids[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of several tokens."""
        return [self.id(t) for t in tokens]

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2
