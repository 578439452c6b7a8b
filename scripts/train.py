"""Same as `wavenet-train`: python scripts/train.py experiment=demo"""

from wavenet.cli.train import main

if __name__ == "__main__":
    main()
