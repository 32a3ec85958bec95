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
    window_records: int = 20_000  # records sorted together; bounds memory
    window_residues: int = 2_000_000
    # A window also closes after about this many seconds of work (None: by size only), so an
    # interrupted run keeps all but about a minute of its work.
    window_seconds: float | None = 60.0
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
    # The encoder on real tokens only (packed, `P2TModel.encode`) or on padded batches. None: a run
    # on CUDA times both before its first batch and takes the faster (`screen.tuning`); padded
    # elsewhere (a CPU never packs unless asked).
    packed_encoder: bool | None = None

    def __post_init__(self) -> None:
        for name in ("max_tokens", "window_records", "window_residues"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be positive or None, got {self.window_seconds}")
