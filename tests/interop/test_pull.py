"""`p2t pull` against a local HTTP server on 127.0.0.1 (tests never leave the machine): a full pull
of ESM2 weights and of a published-layout Prot2Token checkpoint, the record of what was installed,
a transfer cut mid-way then resumed with a Range request, a corrupted file refused, a refused
connection, `--from DIR`. A hostile network's answers are in test_pull_hostile.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
from datetime import datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from conftest import TINY_ENCODER
from prot2token_reference import RefProt2Token, write_published
from typer.testing import CliRunner

from p2t_screen.cli import EXIT_USAGE, app
from p2t_screen.model.encoder import EncoderConfig
from p2t_screen.model.esm_io import hub_checkpoint_path, load_esm2, save_esm_checkpoint
from p2t_screen.model.locations import user_models_dir
from p2t_screen.model.remote import CATALOGUE, PROT2TOKEN_REPO, esm2_entry
from p2t_screen.model.store import load_model

runner = CliRunner()
VOCAB = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<task_stability>": 3, **{str(d): 4 + d for d in range(10)}, ".": 14}


class Site:
    """Files served from a folder, with HTTP Range support (206 with Content-Range, 416 past the
    end) and ways to misbehave, each keyed by path: `cut` (the first response stops after N
    bytes), `etag` (X-Linked-Etag headers, like a Hugging Face LFS file), `chunked`
    (Transfer-Encoding: chunked, no Content-Length), `hold` (the body waits for this event), and
    `custom` (a function that answers in place of the file: a captive portal, a broken resume).
    Every request is recorded in `ranges` as (path, Range header)."""

    def __init__(self, root: Path) -> None:
        self.root, self.cut, self.etag, self.ranges = root, {}, {}, []
        self.chunked, self.hold, self.custom = set(), {}, {}
        site = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                header = self.headers.get("Range")
                site.ranges.append((path, header))
                file = root / path
                if path in site.custom:
                    site.custom[path](self, file.read_bytes() if file.is_file() else b"", header)
                    return
                if not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
                if header and start >= len(data):
                    self.reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                headers = {"X-Linked-Etag": f'"{site.etag[path]}"'} if path in site.etag else {}
                if header:
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self.reply(206 if header else 200, data[start:], headers, path)

            def reply(self, status: int, body: bytes, headers: dict, path: str = "") -> None:
                """Send `body`, chunked or with a Content-Length, cut or held as `site` says for `path`."""
                chunked = path in site.chunked
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body)))))
                self.end_headers()
                if path in site.hold:
                    site.hold[path].wait(timeout=60)
                cut = site.cut.pop(path, None)
                sent = body if cut is None else body[:cut]
                if chunked:
                    for i in range(0, len(sent), 4096):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(sent[i:i + 4096]), sent[i:i + 4096]))
                    # a cut: a chunk that announces 4096 bytes and stops after 100 of them
                    self.wfile.write(b"0\r\n\r\n" if cut is None else b"1000\r\n" + body[cut:cut + 100])
                else:
                    self.wfile.write(sent)
                if cut is not None:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def requests_for(self, path: str) -> list[str | None]:
        """The Range headers of the requests made for `path` (None: the whole file)."""
        return [header for p, header in self.ranges if p == path]

    def close(self) -> None:
        for event in self.hold.values():
            event.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(tmp_path, monkeypatch):
    root = tmp_path / "site"
    root.mkdir()
    server = Site(root)
    monkeypatch.setenv("P2T_ESM_URL", server.url + "/fair-esm")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield server
    server.close()


TINY_ESM = "esm2_t2_tiny"


@pytest.fixture
def tiny_esm(monkeypatch) -> str:
    """A test-only catalogue entry whose layer count and width are the tiny encoder's: a pull
    checks them against the checkpoint, so the tiny weights cannot pose as a real ESM2."""
    entry = esm2_entry(TINY_ESM, TINY_ENCODER["num_layers"], "tiny", TINY_ENCODER["embed_dim"], "~0.1 MB")
    monkeypatch.setitem(CATALOGUE, TINY_ESM, entry)
    return TINY_ESM


def publish_esm(root: Path, name: str, **shape) -> Path:
    """An ESM2 in fair-esm's layout (the tiny encoder unless `shape` says otherwise), at the paths
    fair-esm's hub downloads from."""
    torch.manual_seed(3)
    folder = root / "fair-esm" / "models"
    folder.mkdir(parents=True, exist_ok=True)
    save_esm_checkpoint(EncoderConfig(source="x", **(shape or TINY_ENCODER)).build(), folder / f"{name}.pt")
    (root / "fair-esm" / "regression").mkdir(exist_ok=True)
    shutil.move(folder / f"{name}-contact-regression.pt", root / "fair-esm" / "regression")
    return folder / f"{name}.pt"


def publish_stability(root: Path) -> Path:
    """A small published-layout stability checkpoint in the Hugging Face repository's dated folder."""
    torch.manual_seed(4)
    entry = CATALOGUE["prot2token-stability"]
    folder = root / PROT2TOKEN_REPO / "resolve" / "main" / Path(entry.files[1]).parent
    ref = RefProt2Token(2, 32, 4, len(VOCAB), 16, 2, 1, 32, 12, 64)
    write_published(folder, ref, VOCAB, dim=16, heads=2, layers=1, ffn=32, max_len=12,
                    checkpoint=f"checkpoints/{Path(entry.files[0]).name}")
    return folder


def test_pull_esm2_weights_into_the_torch_hub_cache(site, tiny_esm):
    name = tiny_esm
    published = publish_esm(site.root, name)
    result = runner.invoke(app, ["pull", name, "--json"])
    assert result.exit_code == 0, result.output
    path = hub_checkpoint_path(name)
    assert path.read_bytes() == published.read_bytes()
    assert path.with_name(f"{name}-contact-regression.pt").is_file()
    record = json.loads(result.output)[0]
    assert record["files"][0]["sha256"] == hashlib.sha256(published.read_bytes()).hexdigest()
    config, encoder = load_esm2(name)  # where fair-esm and p2t's loader look
    assert config.num_layers == TINY_ENCODER["num_layers"]


def test_an_installed_file_is_recorded_and_not_downloaded_again(site, tiny_esm):
    published = publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    assert runner.invoke(app, ["pull", tiny_esm]).exit_code == 0
    installed = hub_checkpoint_path(tiny_esm)
    record = json.loads(installed.with_name(f"{tiny_esm}.pt.p2t.json").read_text())
    assert record["sha256"] == hashlib.sha256(published.read_bytes()).hexdigest()
    assert record["bytes"] == published.stat().st_size and record["source"] == f"{site.url}/{path}"
    assert datetime.fromisoformat(record["installed"]).tzinfo is not None
    assert installed.with_name(f"{tiny_esm}-contact-regression.pt.p2t.json").is_file()
    again = runner.invoke(app, ["pull", tiny_esm])
    assert again.exit_code == 0 and f"{tiny_esm}: already installed at {installed}" in " ".join(again.output.split())
    assert site.requests_for(path) == [None]  # the second pull downloaded nothing
    with installed.open("ab") as fh:  # the bytes no longer match their record: downloaded again
        fh.write(b"x")
    third = runner.invoke(app, ["pull", tiny_esm])
    assert third.exit_code == 0 and "already" not in third.output
    assert site.requests_for(path) == [None, None] and installed.read_bytes() == published.read_bytes()


def test_pull_esm2_from_a_folder_is_checked_and_recorded(tmp_path, tiny_esm, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    published = publish_esm(tmp_path / "carried", tiny_esm)
    usb = tmp_path / "usb"
    shutil.copytree(published.parent.parent, usb)
    result = runner.invoke(app, ["pull", tiny_esm, "--from", str(usb)])
    assert result.exit_code == 0, result.output
    installed = hub_checkpoint_path(tiny_esm)
    assert installed.read_bytes() == published.read_bytes()
    record = json.loads(installed.with_name(f"{tiny_esm}.pt.p2t.json").read_text())
    assert record["source"] == str(usb / "models" / f"{tiny_esm}.pt")


def test_pull_prot2token_imports_a_model_that_screens(site, tmp_path):
    publish_stability(site.root)
    result = runner.invoke(app, ["pull", "prot2token-stability"])
    assert result.exit_code == 0, result.output
    assert "research" in result.output  # the authors' terms are shown
    out = user_models_dir() / "prot2token-stability"
    model = load_model(out)
    assert [t.name for t in model.config.tasks] == ["stability"]
    assert "research" in (out / "MODEL_CARD.md").read_text()
    assert not (out.parent.parent / "downloads" / "prot2token-stability").exists()
    (tmp_path / "lib.fasta").write_text(">a\nMKTAYIAKQR\n")
    screened = runner.invoke(app, ["screen", str(tmp_path / "lib.fasta"), "--model", "prot2token-stability",
                                   "-o", str(tmp_path / "out"), "--device", "cpu", "-q"])
    assert screened.exit_code == 0, screened.output


def test_a_cut_transfer_resumes_with_a_range_request(site, tiny_esm):
    name = tiny_esm
    published = publish_esm(site.root, name)
    path = f"fair-esm/models/{name}.pt"
    size = published.stat().st_size
    site.cut[path] = size * 2 // 3  # the connection drops two thirds of the way in
    first = runner.invoke(app, ["pull", name])
    assert first.exit_code == EXIT_USAGE
    assert f"of {size} bytes (run the same command again to resume)" in " ".join(first.output.split())
    part = hub_checkpoint_path(name).with_name(f"{name}.pt.part")
    kept = part.stat().st_size
    assert 0 < kept <= size * 2 // 3 and not hub_checkpoint_path(name).exists()
    assert published.read_bytes().startswith(part.read_bytes())
    second = runner.invoke(app, ["pull", name])
    assert second.exit_code == 0, second.output
    assert (path, f"bytes={kept}-") in site.ranges
    assert hub_checkpoint_path(name).read_bytes() == published.read_bytes() and not part.exists()


def test_a_corrupted_file_is_refused_and_nothing_is_installed(site):
    folder = publish_stability(site.root)
    entry = CATALOGUE["prot2token-stability"]
    checkpoint = f"{PROT2TOKEN_REPO}/resolve/main/{entry.files[0]}"
    site.etag[checkpoint] = hashlib.sha256(b"what the server says it is").hexdigest()
    result = runner.invoke(app, ["pull", "prot2token-stability"])
    assert result.exit_code == EXIT_USAGE
    text = " ".join(result.output.split())
    assert "does not match" in text and "nothing installed" in text
    assert not (user_models_dir() / "prot2token-stability").exists()
    site.etag[checkpoint] = hashlib.sha256((folder / "checkpoints" / Path(entry.files[0]).name).read_bytes()).hexdigest()
    assert runner.invoke(app, ["pull", "prot2token-stability"]).exit_code == 0  # the right digest passes


def test_a_refused_connection_names_the_url_and_the_override(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    result = runner.invoke(app, ["pull", "prot2token-fluorescence"])
    assert result.exit_code == EXIT_USAGE
    text = " ".join(result.output.split())
    assert f"http://127.0.0.1:{port}/{PROT2TOKEN_REPO}/resolve/main/fluorescence/" in text
    assert "HF_ENDPOINT" in text and "--from DIR" in text and "Traceback" not in text
    assert not (user_models_dir() / "prot2token-fluorescence").exists()


def test_pull_from_a_folder_carried_in_by_hand(site, tmp_path, monkeypatch):
    folder = publish_stability(tmp_path / "carried")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing there: the files must come from --from
    flat = tmp_path / "usb"
    shutil.copytree(folder, flat)
    result = runner.invoke(app, ["pull", "prot2token-stability", "--from", str(flat)])
    assert result.exit_code == 0, result.output
    assert load_model(user_models_dir() / "prot2token-stability").config.tasks[0].name == "stability"


def test_unknown_names_and_the_list():
    result = runner.invoke(app, ["pull", "esm3"])
    assert result.exit_code == EXIT_USAGE and "esm2_t33_650M_UR50D" in result.output
    listed = json.loads(runner.invoke(app, ["pull", "--list", "--json"]).output)
    assert {e["name"] for e in listed} == set(CATALOGUE)
    assert all(e["licence"] and e["size"] and e["provides"] for e in listed)
