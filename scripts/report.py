"""Report an upsampling study: python scripts/report.py [sweep|summary|plateau|protocol|shard] ... (--help)"""

from unet_upsampling.report.cli import main

if __name__ == "__main__":
    main()
