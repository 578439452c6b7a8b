"""Same as `wavenet-plot`: python scripts/plot.py RUN_DIR [RUN_DIR ...] [--out FILE]"""

from wavenet.cli.plot import main

if __name__ == "__main__":
    main()
