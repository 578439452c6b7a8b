# Sourced by demo.sh and test.sh: make .venv and install the project with its pinned
# dependencies, again only when pyproject.toml has changed since the last install.
set -euo pipefail
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=$(sha1sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
  echo "installing wavenet and its dependencies into .venv (about a minute)..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  .venv/bin/python -c "import wavenet, torch, torchaudio, hydra, soundfile, tqdm, pytest"
  echo "$stamp" > .venv/.installed
fi
