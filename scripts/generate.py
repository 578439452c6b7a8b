"""Same as `wavenet-generate`: python scripts/generate.py checkpoint=PATH seconds=2"""

from wavenet.cli.generate import main

if __name__ == "__main__":
    main()
