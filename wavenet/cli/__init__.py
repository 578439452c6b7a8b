"""The command-line tools (wavenet-train, -generate, -evaluate, -plot): argument parsing,
exit codes and one-line errors. The only package that imports Hydra and OmegaConf."""

import warnings

# The libraries' notices of their own coming changes are for this package's developers, not
# its users; on stderr they would break every tool's one-line error. Only deprecation and
# future warnings raised inside these libraries are hidden; warnings about the input still show.
for _library in ("torch", "torchaudio", "numba", "hydra", "omegaconf", "pkg_resources"):
    for _category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=_category, module=rf"{_library}(\.|$)")
