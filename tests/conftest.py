"""Tiny models built in the tests, with ESM2 encoders saved in fair-esm's own checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from p2t_screen.model.encoder import EncoderConfig
from p2t_screen.model.esm_io import save_esm_checkpoint
from p2t_screen.model.model import P2TModel, create_model
from p2t_screen.model.store import BUNDLED, save_model
from p2t_screen.decode import Decoded, TaskBlock, decode_stack
from p2t_screen.decode.choice import choose
from p2t_screen.tasks.spec import TaskSpec


@pytest.fixture(autouse=True)
def own_p2t_home(tmp_path_factory, monkeypatch):
    """Tests never read or write the user's models folder: P2T_HOME points into the test's tmp."""
    monkeypatch.setenv("P2T_HOME", str(tmp_path_factory.mktemp("p2t_home")))
    monkeypatch.delenv("P2T_MODELS_DIR", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is much faster than several contending with other work.
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_ENCODER = dict(num_layers=2, embed_dim=32, attention_heads=4, token_dropout=True)

TASKS = [
    TaskSpec("stability", "regression", value_range=(-1.97, 3.4)),
    TaskSpec("kingdom", "class", labels=("archaea", "bacteria", "eukaryota")),
    TaskSpec("location", "multilabel", labels=("Cytoplasm", "Nucleus", "Cell membrane", "Mitochondrion")),
    TaskSpec("phospho", "sites", residues="STY"),
    TaskSpec("positions_k", "sites"),
    TaskSpec("ss3", "per_residue", labels=("H", "E", "C")),
]


def tiny_model(seed: int = 0, max_residues: int = 64, tasks=TASKS, source: str = BUNDLED,
               norm_first: bool = True, memory_positions: int = 0, **decoder_options) -> P2TModel:
    """A random-weight model; random weights exercise grammars and batching, not accuracy.
    `decoder_options`: DecoderConfig fields such as residue_skip or site_pointer."""
    torch.manual_seed(seed)
    enc = EncoderConfig(source=source, max_residues=max_residues, **TINY_ENCODER)
    model = create_model("tiny", enc, list(tasks), dim=32, num_layers=2, num_heads=4, ffn_dim=64,
                         norm_first=norm_first, memory_positions=memory_positions, **decoder_options)
    # Sharpen the output layer so greedy choices are far from ties (stable across batchings).
    with torch.no_grad():
        model.decoder.output.weight.mul_(8.0)
    return model.eval()


FLAGS = TaskSpec("ligands", "multilabel", labels=("ATP", "GTP", "zinc", "heme", "DNA"), encoding="flags")


def flags_model(seed: int = 4, tasks=(), **decoder_options) -> P2TModel:
    """A random model whose first task is the multi-label "flags" task FLAGS, its output layer
    left unsharpened so that label probabilities lie away from 0 and 1 and thresholds decide."""
    model = tiny_model(seed=seed, tasks=[FLAGS, *tasks], **decoder_options)
    with torch.no_grad():
        model.decoder.output.weight.div_(8.0)  # undo tiny_model's sharpening
    return model


def flags_model_dir(path: Path) -> Path:
    """`flags_model()` with a class task "kingdom" beside it, saved to `path`."""
    return save_model(flags_model(tasks=[TaskSpec("kingdom", "class", labels=("a", "b"))]), path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved bundled-encoder tiny model directory."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    save_model(tiny_model(), path)
    return path


@pytest.fixture(scope="session")
def esm_checkpoint(tmp_path_factory) -> Path:
    """A tiny ESM2 saved exactly as fair-esm checkpoints are (cfg Namespace + encoder.* keys)."""
    torch.manual_seed(1)
    model = EncoderConfig(source="x", **TINY_ENCODER).build()
    path = tmp_path_factory.mktemp("esm") / "esm2_t2_tiny.pt"
    save_esm_checkpoint(model, path)
    return path


@torch.no_grad()
def uncached_decode(decoder, memory_kv, keep, prompt, grammar, eos_id, pad_id=0, side=None) -> Decoded:
    """Reference greedy decoding without a KV cache: every step re-runs the whole prefix (the
    screen's cached loop must give the same tokens)."""
    batch, steps = prompt.shape[0], grammar.max_steps
    tokens = torch.full((batch, steps), pad_id, dtype=torch.long, device=prompt.device)
    probs = torch.zeros((batch, steps), device=prompt.device)
    done = torch.zeros(batch, dtype=torch.bool, device=prompt.device)
    prefix, first = prompt, None
    for step in range(steps):
        logits = decoder(prefix, memory_kv, keep, None, 0, side)[:, -1]
        token, prob, logp = choose(logits, grammar.allowed(step), done, pad_id, grammar.bias(step))
        first = logp.exp() if first is None else first
        tokens[:, step], probs[:, step] = token, prob
        grammar.advance(token)
        done = done | token.eq(eos_id)
        if bool(done.all()):
            return Decoded(tokens[:, : step + 1], probs[:, : step + 1], first)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
    return Decoded(tokens, probs, first)


def greedy_decode(decoder, memory_kv, keep, prompt, grammar, eos_id, pad_id=0, forced=None, forced_len=None,
                  side=None, feedback=True, temperature=1.0) -> Decoded:
    """One task's cached decoding after `prompt` (B, 2) `<bos> <task>`: a stack of one block
    (`decode.decode_stack`), for tests that drive a single grammar."""
    block = TaskBlock(int(prompt[0, 1]), grammar, forced, forced_len, temperature)
    return decode_stack(decoder, memory_kv, keep, int(prompt[0, 0]), [block], eos_id, pad_id,
                        side_for=lambda _: side, feedback=feedback)[0]
