"""`p2t import-prot2token`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import P2TError
from .app import app
from .common import WRITE_EXIT_CODES, err, fail


@app.command("import-prot2token", epilog=WRITE_EXIT_CODES)
def import_prot2token_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="published Prot2Token checkpoint (.pth)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="new model directory to write")],
    config: Annotated[Optional[Path], typer.Option(help="the checkpoint's config.yaml [default: beside it, or one folder up]")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(help="the checkpoint's decoder_tokenizer.yaml [default: beside it, or one folder up]")] = None,
    name: Annotated[Optional[str], typer.Option(help="model name [default: prot2token-<tasks>]")] = None,
    skip_unknown_tasks: Annotated[bool, typer.Option("--skip-unknown-tasks", help="import the tasks p2t can run and leave the others out")] = False,
) -> None:
    """Convert a published Prot2Token checkpoint into a p2t model directory.

    The checkpoint is read as tensors only (no pickled code runs). The model keeps the published
    memory layout (encoder input padded to its full length, no memory mask), so it predicts what
    the reference does; `p2t screen --fast-memory` trades that fidelity for speed.
    """
    from ..interop.prot2token import import_prot2token
    from ..interop.prot2token_files import sidecar
    from ..model.store import read_model_config

    try:
        out = import_prot2token(checkpoint, config or sidecar(checkpoint, "config.yaml"),
                                tokenizer or sidecar(checkpoint, "decoder_tokenizer.yaml"), output, name,
                                skip_unknown_tasks=skip_unknown_tasks)
        cfg = read_model_config(out)
    except P2TError as exc:
        raise fail(exc) from None
    err.print(f"wrote {out}: model '{cfg.name}', tasks {', '.join(t.name for t in cfg.tasks)}; "
              f"ESM2 {cfg.encoder.num_layers} layers x {cfg.encoder.embed_dim}, memory padded to "
              f"{cfg.encoder.max_residues + 2} tokens as published", highlight=False)
