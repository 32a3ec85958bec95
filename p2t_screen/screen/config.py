"""How a screen groups records for the model and which decoding paths it takes."""

from __future__ import annotations

from dataclasses import dataclass


DEFAULT_MAX_TOKENS = 16384


@dataclass(frozen=True)
class ScreenConfig:
    """How records are grouped for the model."""

    # Padded encoder tokens per batch. None: `--max-tokens auto`, which a run (`screen_file`)
    # resolves before its first batch: the largest that fits a CUDA device, measured
    # (`screen.tuning`); DEFAULT_MAX_TOKENS on CPU. A `Screener` needs a number.
    max_tokens: int | None = DEFAULT_MAX_TOKENS
    # An output part holds at most this many records and residues (bounds memory), and closes
    # after about `window_seconds` of work (None: by size only), so an interrupted run keeps all
    # but about a minute of its work. Parts are whole blocks (`screen.windows`).
    window_records: int = 20_000
    window_residues: int = 2_000_000
    window_seconds: float | None = 60.0
    # A block (records deduplicated, sorted and batched together; bounds fixed by the input, so
    # that the numbers do not depend on timing) holds at most `window_records` records and this
    # many full batches' worth of residues (`block_batches` x `max_tokens`, within `window_residues`).
    block_batches: int = 4
    # `--fast-memory`: run a model made for a padded memory (imported Prot2Token checkpoints) on
    # the masked memory p2t's own models use (each batch padded to its longest protein, padding
    # masked): much faster on short sequences, but not what the model was trained with (outputs drift).
    fast_memory: bool = False
    host_stages: bool = True  # read ahead / write behind in threads (`screen.stages`); False: in line
    compile: bool = False  # decoder steps through torch.compile (CUDA graphs on GPU; `decode.compiled_step`)
    # torch.compile's backend: "inductor" (kernels; on CUDA with CUDA graphs), or e.g. "aot_eager",
    # which traces the same graphs without building kernels (quick on CPU: the tests use it).
    compile_backend: str = "inductor"
    stack_tasks: bool = True  # one decode loop for all of a batch's tasks; False: one per task (bench)
    # The encoder on real tokens only (packed varlen attention, `P2TModel.encode`) instead of
    # length-sorted padded batches. Off unless asked: on CPU packed ran at 0.31x the padded path,
    # and no GPU figure shows it faster yet (tools/gpu_bench.sh times both; docs/bench/gpu).
    # A choice timed at the start of each run would make a run's numbers depend on the clock.
    packed_encoder: bool = False
    # `--coverage`: the level of the conformal intervals and sets the rows carry, one of those
    # stored at calibration time (`trust.conformal.LEVELS`).
    coverage: float = 0.9  # tasks.conformal.DEFAULT_LEVEL (not imported here: `p2t --help` needs no torch)

    def __post_init__(self) -> None:
        from ..tasks.conformal import check_level

        object.__setattr__(self, "coverage", check_level(self.coverage))
        for name in ("max_tokens", "window_records", "window_residues", "block_batches"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be positive or None, got {self.window_seconds}")
