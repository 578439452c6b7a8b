"""Same as `wavenet-evaluate`: python scripts/evaluate.py checkpoint=PATH data.root=DIR"""

from wavenet.cli.evaluate import main

if __name__ == "__main__":
    main()
