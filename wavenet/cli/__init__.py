"""The command-line tools (wavenet-train, -generate, -evaluate, -plot): argument parsing,
exit codes and one-line errors. The only package that imports Hydra and OmegaConf."""
