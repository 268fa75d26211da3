"""The fetch-inputs init container's script fetches a blob storage folder as a job sees it.

The script (`workloadobjects.FETCH_BLOB_FOLDER` and a job's `_fetch_step` lines) runs here with
this machine's `/bin/sh` and `curl` against a small stand-in for Azure blob storage on loopback
that answers the List Blobs API (`?restype=container&comp=list&prefix=...`, two pages joined by
a `NextMarker`) and serves each blob anonymously, as a public container does.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.model import workloads
from reconciler.render import workloadobjects
from tests.helpers import http_server

BLOBS = {
    "iris.csv": b"sepal_length,species\n5.1,setosa\n",
    "images/a.txt": b"a\n",
    "images/deep/b.txt": b"b\n",
    "other/c.txt": b"c\n",
}

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class BlobStore(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        if query.get("comp") == ["list"]:
            prefix = query.get("prefix", [""])[0]
            names = sorted(n for n in BLOBS if n.startswith(prefix))
            first_page = "marker" not in query
            page, rest = (names[:1], names[1:]) if first_page else (names[1:], [])
            entries = "".join(f"<Blob><Name>{n}</Name></Blob>" for n in page)
            marker = f"<NextMarker>{rest[0]}</NextMarker>" if rest else "<NextMarker />"
            body = f"<EnumerationResults><Blobs>{entries}</Blobs>{marker}</EnumerationResults>"
            self._answer(200, body.encode())
            return
        name = url.path.removeprefix("/data/")
        if name in BLOBS:
            self._answer(200, BLOBS[name])
        else:
            self._answer(404, b"BlobNotFound")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def store() -> Iterator[str]:
    with http_server(BlobStore) as url:
        yield f"{url}/data"


def run(script: str) -> None:
    done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_folder_is_listed_page_by_page_and_fetched_with_its_subfolders(
    store: str, tmp_path: Path
) -> None:
    run(f"{workloadobjects.FETCH_BLOB_FOLDER}\nfetch_blob_folder {store} images/ {tmp_path}")
    assert files(tmp_path) == {"a.txt": b"a\n", "deep/b.txt": b"b\n"}


def test_the_container_root_is_fetched_whole(store: str, tmp_path: Path) -> None:
    run(f"{workloadobjects.FETCH_BLOB_FOLDER}\nfetch_blob_folder {store} '' {tmp_path}")
    assert files(tmp_path) == BLOBS


def test_a_file_input_is_fetched_under_its_name(store: str, tmp_path: Path) -> None:
    step = workloadobjects._fetch_step(
        workloads.JobInput("iris", remote=f"{store}/iris.csv"), str(tmp_path)
    )
    run(f"{workloadobjects.FETCH_BLOB_FOLDER}\n{step}")
    assert files(tmp_path) == {"iris.csv": BLOBS["iris.csv"]}


def test_a_missing_blob_fails_the_init_container(store: str, tmp_path: Path) -> None:
    step = workloadobjects._fetch_step(
        workloads.JobInput("x", remote=f"{store}/missing.csv"), str(tmp_path)
    )
    done = subprocess.run(
        ["/bin/sh", "-c", f"{workloadobjects.FETCH_BLOB_FOLDER}\n{step}"],
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
