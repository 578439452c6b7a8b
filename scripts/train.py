"""Same as `wavenet-train`: python scripts/train.py experiment=demo"""

if __name__ == "__main__":
    # Imported here, not above: a spawned decoding worker re-runs this file, and should not
    # load the training loop to decode files.
    from wavenet.cli.train import main

    main()
