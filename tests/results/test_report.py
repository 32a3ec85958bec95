"""`p2t report`: a self-contained HTML page, checked by parsing it and, where Chromium is
installed, by rendering it in headless Chromium."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from screened import screen
from typer.testing import CliRunner

from p2t_screen.cli import app
from p2t_screen.results.dataset import UnfinishedRun
from p2t_screen.results.report import ReportRequest, write_report

pytestmark = pytest.mark.usefixtures("one_thread")
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def screened(tmp_path_factory):
    return screen(tmp_path_factory.mktemp("screened"))


class Page(HTMLParser):
    """Tags, images and headings of a page, with unclosed or stray end tags counted."""

    VOID = {"meta", "img", "br", "input", "link"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack, self.problems, self.images, self.headings, self.scripts = [], [], [], [], []
        self._heading = None
        self.feed(text)
        self.close()
        self.problems += [f"unclosed <{t}>" for t in self.stack]

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("h2", "h3"):
            self._heading = ""
        if tag == "script":
            self.scripts.append(attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in ("h2", "h3") and self._heading is not None:
            self.headings.append(self._heading.strip())
            self._heading = None
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"stray </{tag}>")
            return
        self.stack.pop()

    def handle_data(self, data):
        if self._heading is not None:
            self._heading += data


def embedded_rows(html: str) -> dict:
    blob = re.search(r"<script type='application/json' id='p2t-rows'>(.*?)</script>", html, re.S).group(1)
    return json.loads(blob.replace("<\\/", "</"))


def test_the_report_is_one_offline_page_with_every_task(screened, tmp_path):
    out, _ = screened
    done = write_report(ReportRequest(out, tmp_path / "r.html", ids=("p1", "nobody")))
    html = done.path.read_text()
    page = Page(html)
    assert not page.problems, page.problems[:5]
    tasks = ["stability", "kingdom", "location", "phospho", "positions_k", "ss3", "binds", "affinity"]
    for task in tasks:
        assert any(h.startswith(task) for h in page.headings), task
    # Nothing is fetched: no external src/href, no CSS imports or remote urls; figures are inline SVG.
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:|//|file:)""", html)
    assert "@import" not in html and not re.search(r"url\(\s*['\"]?https?:", html)
    assert all(not s.get("src") for s in page.scripts)
    svgs = [base64.b64decode(img["src"].split(",", 1)[1]) for img in page.images]
    assert len(svgs) >= len(tasks) + 1 and all(s.lstrip().startswith(b"<?xml") and b"<svg" in s for s in svgs)
    # The run, the rows that are not ok, the tracks asked for, the table.
    assert "sha256" in html and "invalid character" in html and "exceeds the encoder limit" in html
    assert "not in these results: nobody" in html and "p1 protein p1" in html
    data = embedded_rows(html)
    assert len(data["rows"]) == done.proteins and data["columns"][:3] == ["id", "header", "input_index"]
    assert done.table.is_file() and done.table.name in html

    small = write_report(ReportRequest(out, tmp_path / "s.html", table_rows=3))
    assert len(embedded_rows(small.path.read_text())["rows"]) == 3
    assert f"the first 3 of {small.proteins}" in small.path.read_text()


def test_a_report_of_an_unfinished_run_says_so(screened, tmp_path):
    out, _ = screened
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "_SUCCESS").unlink()
    with pytest.raises(UnfinishedRun, match="--allow-partial"):
        write_report(ReportRequest(partial))
    assert not (partial / "_report.html").exists()
    html = write_report(ReportRequest(partial, allow_partial=True)).path.read_text()
    assert "unfinished run: all 14 input records have rows" in html and (partial / "_report.html").is_file()


def test_screen_report_flag_and_the_found_column(tmp_path, tiny_model_dir):
    lib = tmp_path / "lib.fasta"
    lib.write_text(">a\nMKTAYIAKQRQISFVKSHFSRQ\n>b\nMSTNPKPQRKTKRNTNRRPQDV\n")
    result = CliRunner().invoke(app, ["screen", str(lib), "--model", str(tiny_model_dir), "-o", str(tmp_path / "out"),
                                      "--device", "cpu", "--report"])
    assert result.exit_code == 0, result.output
    assert "found" in result.output and "of residues" in result.output and "sites per protein" in result.output
    assert (tmp_path / "out" / "_report.html").is_file() and "report ->" in result.output
    result = CliRunner().invoke(app, ["report", str(tmp_path / "out"), "-o", str(tmp_path / "r.html"),
                                      "--ids", "b"])
    assert result.exit_code == 0, result.output
    assert "<h3>b <span" in (tmp_path / "r.html").read_text()


def _browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def render(html: Path, png: Path, browser: str) -> tuple[str, str]:
    """Screenshot the page and dump its DOM after the scripts ran: (console log, DOM)."""
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr",
             "--v=0", "--window-size=1280,2000"]
    shot = subprocess.run([*flags, f"--screenshot={png}", html.as_uri()], capture_output=True, text=True, check=True)
    dom = subprocess.run([*flags, "--dump-dom", html.as_uri()], capture_output=True, text=True, check=True)
    console = [line for line in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in line]
    return "\n".join(console), dom.stdout


@pytest.mark.skipif(_browser() is None, reason="no Chromium installed (apt-get install chromium-headless-shell)")
def test_the_report_renders_in_chromium_without_errors(screened, tmp_path):
    from PIL import Image, ImageStat

    out, _ = screened
    page = write_report(ReportRequest(out, tmp_path / "r.html")).path
    console, dom = render(page, tmp_path / "shot.png", _browser())
    assert console == "", console  # the page logs nothing: no script errors
    body = re.search(r'<table id="p2t-table">.*?</table>', dom, re.S).group(0)
    assert body.count("<tr>") == 1 + min(50, embedded_rows(page.read_text())["rows"].__len__())  # header + a page
    image = Image.open(tmp_path / "shot.png").convert("L")
    assert image.size == (1280, 2000)
    assert ImageStat.Stat(image).stddev[0] > 20 and len(image.getcolors(1 << 16)) > 50  # not blank

    broken = tmp_path / "broken.html"  # the check itself catches a script error
    broken.write_text(page.read_text().replace("const PAGE = 50", "const PAGE = nosuch"))
    console, _ = render(broken, tmp_path / "b.png", _browser())
    assert "nosuch is not defined" in console
