"""`p2t pull` against a hostile network, played by the local server of test_pull.py: a chunked body
cut mid-way, a captive portal's page in place of the file, a resume answered from byte 0, a body
longer than stated, a checkpoint that is not the model it is named after, two pulls at once, a
full disk. Each is refused in one line naming the URL, keeping a `.part` only where a resume can
continue it; nothing broken is ever installed. Then the content checks by kind, file by file."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from test_pull import Site, publish_esm, runner, site, tiny_esm  # noqa: F401 (fixtures)

from p2t_screen.cli import EXIT_USAGE, app
from p2t_screen.interop.file_checks import ContentError, EsmCheckpoint, check_content
from p2t_screen.model.esm_io import hub_checkpoint_path
from p2t_screen.model.locations import user_models_dir
from p2t_screen.model.remote import CATALOGUE, PROT2TOKEN_REPO

PORTAL = b"<!DOCTYPE html>\n<html><head><title>Sign in to Guest Wi-Fi</title></head><body>...</body></html>\n"


def one_line(result) -> str:
    """The CLI's output, checked to be a single line with no traceback."""
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def part_of(name: str) -> Path:
    return hub_checkpoint_path(name).with_name(f"{name}.pt.part")


def nothing_installed(name: str) -> bool:
    return not hub_checkpoint_path(name).exists() and not part_of(name).exists()


def test_a_chunked_body_cut_mid_way_is_kept_and_resumed(site: Site, tiny_esm):
    published = publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.chunked.add(path)  # no Content-Length: only the chunked framing shows the body ended early
    cut = site.cut[path] = published.stat().st_size // 2
    first = runner.invoke(app, ["pull", tiny_esm])
    assert first.exit_code == EXIT_USAGE
    line = one_line(first)
    kept = part_of(tiny_esm).read_bytes()
    assert f"cannot download {site.url}/{path}: the connection dropped before the end of the body; " \
           f"the transfer stopped at {len(kept)} bytes (run the same command again to resume)" in line
    assert 0 < len(kept) <= cut + 100 and published.read_bytes().startswith(kept)
    assert not hub_checkpoint_path(tiny_esm).exists()
    second = runner.invoke(app, ["pull", tiny_esm])  # chunked again, whole this time
    assert second.exit_code == 0, second.output
    assert site.requests_for(path) == [None, f"bytes={len(kept)}-"]
    assert hub_checkpoint_path(tiny_esm).read_bytes() == published.read_bytes()


def test_a_captive_portal_page_is_named_and_nothing_is_kept(site: Site, tiny_esm):
    publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.custom[path] = lambda handler, data, rng: handler.reply(200, PORTAL, {"Content-Type": "text/html"})
    result = runner.invoke(app, ["pull", tiny_esm])
    assert result.exit_code == EXIT_USAGE
    line = one_line(result)
    assert f"{site.url}/{path}: got an HTML page, not a checkpoint: a captive portal or login page?" in line
    assert nothing_installed(tiny_esm)


def test_a_portal_page_does_not_overwrite_a_part_it_cannot_continue(site: Site, tiny_esm):
    published = publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.cut[path] = 100_000  # past the first read of 64 kB: a part is kept
    runner.invoke(app, ["pull", tiny_esm])
    kept = part_of(tiny_esm).read_bytes()
    site.custom[path] = lambda handler, data, rng: handler.reply(200, PORTAL, {})  # Range ignored
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    assert "an HTML page" in line and f"the {len(kept)} bytes kept from before are untouched" in line
    assert part_of(tiny_esm).read_bytes() == kept
    del site.custom[path]
    assert runner.invoke(app, ["pull", tiny_esm]).exit_code == 0  # the portal gone, the resume continues
    assert hub_checkpoint_path(tiny_esm).read_bytes() == published.read_bytes()


def test_a_body_that_is_no_checkpoint_is_refused_and_deleted(site: Site, tiny_esm):
    publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.custom[path] = lambda handler, data, rng: handler.reply(200, b"Access denied by policy\n", {})
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    assert f"{site.url}/{path}: got a file that is not a torch checkpoint" in line
    assert "It was deleted, nothing installed." in line and nothing_installed(tiny_esm)


def test_a_body_cut_with_no_length_stated_is_caught_by_the_content_check(site: Site, tiny_esm):
    publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"

    def close_delimited(handler, data, rng):  # HTTP/1.0: the body ends where the connection does
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(data[: len(data) // 2])

    site.custom[path] = close_delimited
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    assert f"{site.url}/{path}: got a cut or damaged zip archive, not a whole checkpoint" in line
    assert nothing_installed(tiny_esm)


@pytest.mark.parametrize("content_range", ["from 0", None, "bytes=oops"])
def test_a_resume_answered_from_the_wrong_byte_is_refused(site: Site, tiny_esm, content_range):
    published = publish_esm(site.root, tiny_esm)
    size = published.stat().st_size
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.cut[path] = 100_000  # past the first read of 64 kB: a part is kept
    runner.invoke(app, ["pull", tiny_esm])
    kept = part_of(tiny_esm).stat().st_size
    stated = f"bytes 0-{size - 1}/{size}" if content_range == "from 0" else content_range

    def whole_file_as_206(handler, data, rng):
        handler.reply(206, data, {"Content-Range": stated} if stated else {})

    site.custom[path] = whole_file_as_206
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    said = f"Content-Range {stated!r}" if stated else "no Content-Range"
    assert f"{site.url}/{path}: asked for the file from byte {kept}, the server answered 206 with {said}" in line
    assert "which was deleted" in line and nothing_installed(tiny_esm)
    del site.custom[path]
    assert runner.invoke(app, ["pull", tiny_esm]).exit_code == 0  # starts over from byte 0
    assert site.requests_for(path)[-1] is None
    assert hub_checkpoint_path(tiny_esm).read_bytes() == published.read_bytes()


def test_a_body_longer_than_the_file_it_states_is_refused(site: Site, tiny_esm):
    publish_esm(site.root, tiny_esm)
    path = f"fair-esm/models/{tiny_esm}.pt"
    site.chunked.add(path)
    site.custom[path] = lambda handler, data, rng: handler.reply(  # says 1000 bytes, sends them all
        206, data, {"Content-Range": "bytes 0-999/1000"}, path)
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    assert "of a file it says is 1000 bytes; the partial file was deleted" in line
    assert nothing_installed(tiny_esm)


def test_a_part_longer_than_the_file_is_deleted(site: Site, tiny_esm):
    published = publish_esm(site.root, tiny_esm)
    part = part_of(tiny_esm)
    part.parent.mkdir(parents=True)
    part.write_bytes(published.read_bytes() + b"junk")  # 416: past the end, with the file's length
    line = one_line(runner.invoke(app, ["pull", tiny_esm]))
    assert f"the partial file holds {published.stat().st_size + 4} bytes but the server says the file is " \
           f"{published.stat().st_size}; it was deleted" in line
    assert nothing_installed(tiny_esm)


def test_an_esm2_checkpoint_that_is_not_the_named_model_is_refused(site: Site):
    name = "esm2_t6_8M_UR50D"
    publish_esm(site.root, name)  # the tiny encoder: 2 layers of width 32
    line = one_line(runner.invoke(app, ["pull", name]))
    assert f"{site.url}/fair-esm/models/{name}.pt: got an ESM2 checkpoint with 2 layers of width 32 in its " \
           f"cfg; {name} has 6 layers of width 320. It was deleted, nothing installed." in line
    assert nothing_installed(name)


def test_an_esm2_cfg_that_lies_about_its_weights_is_refused(site: Site):
    name = "esm2_t6_8M_UR50D"
    published = publish_esm(site.root, name)
    with torch.serialization.safe_globals([argparse.Namespace]):
        data = torch.load(published, weights_only=True)
    data["cfg"]["model"].encoder_layers, data["cfg"]["model"].encoder_embed_dim = 6, 320
    torch.save(data, published)
    line = one_line(runner.invoke(app, ["pull", name]))
    assert "cfg says 6 layers of width 320 but whose weights hold 2 layers with token embeddings of width 32" in line
    assert nothing_installed(name)


def test_a_portal_page_carried_in_by_hand_is_refused(tmp_path, tiny_esm, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / f"{tiny_esm}.pt").write_bytes(PORTAL)  # "Save page as" on the download site
    line = one_line(runner.invoke(app, ["pull", tiny_esm, "--from", str(usb)]))
    assert f"{usb / f'{tiny_esm}.pt'}: got an HTML page, not a checkpoint" in line
    assert nothing_installed(tiny_esm)


def test_a_prot2token_config_that_is_no_mapping_is_refused(site: Site):
    entry = CATALOGUE["prot2token-stability"]
    path = f"{PROT2TOKEN_REPO}/resolve/main/{entry.files[1]}"
    site.custom[path] = lambda handler, data, rng: handler.reply(200, b"- maintenance\n- try later\n", {})
    folder = site.root / PROT2TOKEN_REPO / "resolve" / "main" / Path(entry.files[0]).parent
    folder.mkdir(parents=True)
    torch.save({"model_state_dict": {}}, folder / Path(entry.files[0]).name)
    result = runner.invoke(app, ["pull", "prot2token-stability"])
    assert result.exit_code == EXIT_USAGE
    assert f"{site.url}/{path}: got YAML holding a list, not a mapping" in result.output
    assert not (user_models_dir() / "prot2token-stability").exists()


def _wait_for(what: str, condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_two_pulls_at_once_take_turns_and_download_once(site: Site, tmp_path):
    name = "esm2_t6_8M_UR50D"  # the real catalogue entry, with weights of its real shape (30 MB)
    published = publish_esm(site.root, name, num_layers=6, embed_dim=320, attention_heads=20, token_dropout=True)
    path = f"fair-esm/models/{name}.pt"
    site.hold[path] = release = threading.Event()  # the body waits until the second pull waits too
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    command = [sys.executable, "-m", "p2t_screen", "pull", name]
    procs = []
    with contextlib.ExitStack() as stack:
        def start(log: Path) -> None:
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                          stderr=stack.enter_context(log.open("w"))))
        try:
            start(logs[0])
            _wait_for("the first pull's request", lambda: site.requests_for(path))
            start(logs[1])
            _wait_for("the second pull to wait on the lock", lambda: "waiting" in logs[1].read_text())
            release.set()
            codes = [p.wait(timeout=120) for p in procs]
        finally:
            release.set()
            for p in procs:
                if p.poll() is None:
                    p.kill()
    first, second = (log.read_text() for log in logs)
    assert codes == [0, 0], first + second
    assert "Traceback" not in first + second
    assert second.count(f"{name}.pt is being pulled by pid {procs[0].pid} on ") == 1
    assert f"{name}: already installed at {hub_checkpoint_path(name)}" in " ".join(second.split())
    assert site.requests_for(path) == [None]  # exactly one download
    assert hub_checkpoint_path(name).read_bytes() == published.read_bytes()
    record = json.loads(hub_checkpoint_path(name).with_name(f"{name}.pt.p2t.json").read_text())
    assert record["bytes"] == published.stat().st_size


def test_a_full_disk_keeps_the_part_and_resumes_once_there_is_room(site: Site, tiny_esm, tmp_path, monkeypatch):
    published = publish_esm(site.root, tiny_esm)
    disk = tmp_path / "small-disk"
    disk.mkdir()
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                 capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no `mount` command here to make a small disk to fill")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 64 kB tmpfs to fill (needs root with CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        monkeypatch.setenv("TORCH_HOME", str(disk / "torch"))
        assert published.stat().st_size > 64 * 1024
        line = one_line(runner.invoke(app, ["pull", tiny_esm]))
        part = part_of(tiny_esm)
        kept = part.read_bytes()
        assert line == (f"error: no space left on device while writing {part}: {len(kept)} bytes kept; "
                        "free space and run the same command again to resume")
        assert 0 < len(kept) < published.stat().st_size and published.read_bytes().startswith(kept)
        subprocess.run(["mount", "-o", "remount,size=1m", str(disk)], check=True)  # space freed
        again = runner.invoke(app, ["pull", tiny_esm])
        assert again.exit_code == 0, again.output
        assert site.requests_for(f"fair-esm/models/{tiny_esm}.pt")[-1] == f"bytes={len(kept)}-"
        assert hub_checkpoint_path(tiny_esm).read_bytes() == published.read_bytes()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


# The content checks by kind, on files written here.

def test_a_safetensors_header_must_cover_the_file(tmp_path):
    good = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(4, 4), "b": torch.zeros(4)}, str(good))
    check_content(good, good.name)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(ContentError, match="tensors end at byte 80 of a data section of 72 bytes"):
        check_content(cut, cut.name)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\xff" * 64)
    with pytest.raises(ContentError, match="not safetensors"):
        check_content(junk, junk.name)
    bad_json = tmp_path / "bad.safetensors"
    bad_json.write_bytes((4).to_bytes(8, "little") + b"{x:1")
    with pytest.raises(ContentError, match="header is not valid"):
        check_content(bad_json, bad_json.name)


def test_yaml_must_be_a_mapping_and_html_is_named(tmp_path):
    good = tmp_path / "config.yaml"
    good.write_text(yaml.safe_dump({"a": 1}))
    check_content(good, good.name)
    for text, why in (("- a\n- b\n", "YAML holding a list, not a mapping"), ("a: [1\n", "not valid YAML"),
                      ("\n  <html><body>Login</body></html>", "an HTML page, not a YAML file")):
        good.write_text(text)
        with pytest.raises(ContentError, match=why.replace("[", r"\[")):
            check_content(good, good.name)


def test_torch_checkpoints_legacy_and_zip_and_what_they_must_hold(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3)}, legacy, _use_new_zipfile_serialization=False)
    check_content(legacy, legacy.name)
    needs_code = tmp_path / "trainer.pth"  # whole, but its pickle names code: the importer explains
    torch.save({"model_state_dict": {}, "saved": datetime.date(2024, 7, 5)}, needs_code)
    check_content(needs_code, needs_code.name)
    with pytest.raises(ContentError, match="needs pickled code to load"):
        check_content(needs_code, "x.pt", EsmCheckpoint("x", 2, 32))
    no_esm = tmp_path / "other.pt"
    torch.save({"w": torch.ones(3)}, no_esm)
    with pytest.raises(ContentError, match="without fair-esm's ESM2 layout"):
        check_content(no_esm, no_esm.name, EsmCheckpoint("x", 2, 32))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(no_esm.read_bytes()[:-100])
    with pytest.raises(ContentError, match="cut or damaged zip archive"):
        check_content(cut, cut.name)
