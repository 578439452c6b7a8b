"""wavenet-generate's argument checks, in process: each bad argument is one line and exit 2."""

import pytest
from tools import one_line_error


@pytest.mark.parametrize("args,match", [
    (["checkpoint=/nonexistent/x.pt"], "checkpoint not found"),
    (["checkpoint=README.md"], "README.md"),
    (["seconds=-1", "checkpoint=x.pt"], "seconds"),
    (["batch=0", "checkpoint=x.pt"], "batch"),
    (["checkpoint=x.pt", "colour=red"], "colour"),
    (["stray"], "key=value"),
])
def test_generate_user_errors_are_one_line(args, match, repo_root, cli_main, monkeypatch):
    monkeypatch.chdir(repo_root)  # checkpoint=README.md
    one_line_error(cli_main("wavenet-generate", *args), "wavenet-generate: error:", match)
