"""Same as `wavenet-train`: python scripts/train.py experiment=demo"""

from wavenet.training.loop import main

if __name__ == "__main__":
    main()
